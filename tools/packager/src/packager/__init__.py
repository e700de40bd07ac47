"""Packager: validates, tests and ships the Triton models of this monorepo."""

__version__ = "0.2.0"

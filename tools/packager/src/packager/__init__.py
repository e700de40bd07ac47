"""Packager: validates, tests and ships the Triton models of this monorepo."""

__version__ = "0.1.0"

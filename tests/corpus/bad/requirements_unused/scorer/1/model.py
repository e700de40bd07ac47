"""Minimal python-backend model for the validator corpus: it loads and answers nothing."""


class TritonPythonModel:
    def execute(self, requests: list[object]) -> list[object]:
        return []

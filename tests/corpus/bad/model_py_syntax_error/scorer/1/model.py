"""A step with a syntax error: Triton fails its load."""


class TritonPythonModel:
    def execute(self, requests: list[object]) -> list[object]
        return []

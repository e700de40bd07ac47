"""The rule on models that call others by name (BLS): what they call must be loaded where they serve.

A SageMaker multi-model endpoint loads only the top-level model of a TargetModel (the ensemble, or the only
model) and, through it, the ensemble's steps: Triton's SageMaker front registers the archive and loads that
one model (`SageMakerMMELoadModel` in triton-inference-server/server's src/sagemaker_server.cc; reported as
server#5452, "BLS script fails to load additional models on sagemaker"). A model reached only by a python
step's `pb_utils.InferenceRequest(model_name=...)` is never loaded there, and every request fails with
"Model '...' is not ready", unless a loaded model loads it (`pb_utils.load_model`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from packager.modeldir import Diagnostic, TritonModel, loaded_with, model_calls


def check_calls(models: Mapping[str, TritonModel]) -> Iterator[Diagnostic]:
    """Each call by name, in a model the endpoint loads, to a model it does not load: at the call. Nothing
    while the top-level model is not settled (the ensemble rules say why)."""
    steps = {step.model_name for model in models.values() for step in model.config.ensemble_scheduling.step}
    tops = [name for name, model in models.items() if model.is_ensemble and name not in steps]
    if len(models) == 1:
        tops = list(models)
    if len(tops) != 1:
        return
    top = tops[0]
    loaded = loaded_with(top, models)
    for name in sorted(loaded):
        calls = model_calls(models[name])
        for called in sorted(calls.names - loaded):
            site = calls.site(called)
            assert site is not None  # every name a call gives has a site
            where = "" if called in models else f" (and no Triton model here is named {called!r})"
            message = (
                f"{name} calls {called!r} by name{where}, which a multi-model endpoint never loads: SageMaker "
                f"MME loads only the top-level model {top!r} and its ensemble steps; load it where it is called "
                f"(`pb_utils.load_model(model_name={called!r})` in initialize), or adopt the repository with "
                "`packager adopt`, which puts a step that loads the models called by name in front"
            )
            yield Diagnostic(site.path, site.line, site.column, message, "calls")

"""Rules on ensembles: steps, tensor wiring, data flow, and the one top-level ensemble an MME serves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from packager.modeldir import Diagnostic, TritonModel, entry_points, enum_name

SCHEDULING = ("ensemble_scheduling", 0)


@dataclass(frozen=True)
class _Use:
    """One place that fixes an ensemble tensor's data type and shape."""

    data_type: int
    dims: tuple[int, ...]
    batching: bool
    where: str

    def full_dims(self) -> tuple[int, ...]:
        return (-1, *self.dims) if self.batching else self.dims

    def fits(self, other: _Use) -> bool:
        return _dims_match(self.dims, other.dims) or _dims_match(self.full_dims(), other.full_dims())

    def shape(self) -> str:
        return "[" + ", ".join(str(dim) for dim in self.full_dims()) + "]"


def _dims_match(left: Sequence[int], right: Sequence[int]) -> bool:
    return len(left) == len(right) and all(a == b or -1 in (a, b) for a, b in zip(left, right, strict=True))


def _type_name(data_type: int) -> str:
    return enum_name(pb.DataType, data_type)


def check_ensembles(models: Mapping[str, TritonModel], unreadable: set[str]) -> Iterator[Diagnostic]:
    """Check every ensemble among `models` (the parsed Triton models of one model directory).

    `unreadable` names Triton models whose config did not parse: steps using them are not cross-checked.
    """
    for model in models.values():
        if model.is_ensemble:
            yield from _EnsembleCheck(model, models, unreadable).run()
    yield from _check_ensemble_cycles(models)


class _EnsembleCheck:
    """The checks of one ensemble, which share what is known of its tensors."""

    def __init__(
        self, ensemble: TritonModel, models: Mapping[str, TritonModel], unreadable: set[str]
    ) -> None:
        self.ensemble = ensemble
        self.models = models
        self.unreadable = unreadable
        self.config = ensemble.config
        self.steps = list(ensemble.config.ensemble_scheduling.step)
        self.uses: dict[str, _Use] = {}
        self.producers: dict[str, int] = {}

    def diagnostic(self, message: str, *field: str | int) -> Diagnostic:
        return self.ensemble.parsed.diagnostic("ensemble", message, *field)

    def run(self) -> Iterator[Diagnostic]:
        if not self.config.HasField("ensemble_scheduling"):
            return
        if not self.steps:
            yield self.diagnostic("an ensemble needs at least one step", *SCHEDULING)
            return
        batching = self.config.max_batch_size > 0
        for field in ("input", "output"):
            for tensor in getattr(self.config, field):
                dims = tuple(tensor.reshape.shape) if tensor.HasField("reshape") else tuple(tensor.dims)
                where = f"ensemble {field} {tensor.name!r}"
                self.uses.setdefault(tensor.name, _Use(tensor.data_type, dims, batching, where))
        for index, step in enumerate(self.steps):
            yield from self._check_step(index, step)
        yield from self._check_data_flow()

    def _step_field(self, index: int, *field: str | int) -> tuple[str | int, ...]:
        return (*SCHEDULING, "step", index, *field)

    def _map_field(self, index: int, map_name: str, key: str, part: str) -> tuple[str | int, ...]:
        entry = self.ensemble.parsed.positions.map_entry(*self._step_field(index, map_name), key=key)
        if entry is None:
            return self._step_field(index, map_name)
        return self._step_field(index, map_name, entry, part, 0)

    def _check_step(self, index: int, step: pb.ModelEnsembling.Step) -> Iterator[Diagnostic]:
        for field in ("model_name", "input_map", "output_map"):
            if not getattr(step, field):
                yield self.diagnostic(f"step {index + 1} must set {field}", *self._step_field(index))
        for key, tensor in sorted(step.output_map.items()):
            if tensor in self.producers:
                message = (
                    f"ensemble tensor {tensor!r} is already written by step {self.producers[tensor] + 1}"
                )
                yield self.diagnostic(message, *self._map_field(index, "output_map", key, "value"))
            self.producers.setdefault(tensor, index)
        if not step.model_name:
            return
        model = self.models.get(step.model_name)
        if model is None:
            if step.model_name not in self.unreadable:
                available = ", ".join(sorted(set(self.models) | self.unreadable)) or "none"
                message = (
                    f"step model {step.model_name!r} is not a Triton model in this model directory "
                    f"(available: {available})"
                )
                yield self.diagnostic(message, *self._step_field(index, "model_name", 0))
            return
        yield from self._check_step_model(index, step, model)

    def _check_step_model(
        self, index: int, step: pb.ModelEnsembling.Step, model: TritonModel
    ) -> Iterator[Diagnostic]:
        config = model.loaded_config
        if step.model_version != -1 and step.model_version not in model.versions_to_load():
            loaded = ", ".join(str(version) for version in model.versions_to_load()) or "none"
            message = f"step asks for version {step.model_version} of {model.name!r}, which Triton does not load (loaded: {loaded})"
            yield self.diagnostic(message, *self._step_field(index, "model_version", 0))
        if not model.config_known:
            return  # Triton completes the step's config, and was not asked: validate says so
        if 0 < config.max_batch_size < self.config.max_batch_size:
            message = (
                f"ensemble max_batch_size {self.config.max_batch_size} exceeds the {config.max_batch_size} "
                f"of its step model {model.name!r}"
            )
            yield self.diagnostic(message, *self._step_field(index, "model_name", 0))
        yield from self._check_mapping(index, step, model, "input_map", config.input)
        yield from self._check_mapping(index, step, model, "output_map", config.output)
        for tensor in config.input:
            if tensor.name not in step.input_map and not tensor.optional:
                message = (
                    f"input {tensor.name!r} of step model {model.name!r} is not mapped to any ensemble tensor"
                )
                yield self.diagnostic(message, *self._step_field(index, "input_map"))

    def _check_mapping(
        self,
        index: int,
        step: pb.ModelEnsembling.Step,
        model: TritonModel,
        map_name: str,
        tensors: Sequence[pb.ModelInput] | Sequence[pb.ModelOutput],
    ) -> Iterator[Diagnostic]:
        kind = "input" if map_name == "input_map" else "output"
        by_name = {tensor.name: tensor for tensor in tensors}
        for key, ensemble_tensor in sorted(getattr(step, map_name).items()):
            tensor = by_name.get(key)
            if tensor is None:
                known = ", ".join(sorted(by_name)) or "none"
                message = f"{key!r} is not an {kind} of step model {model.name!r} ({kind}s: {known})"
                yield self.diagnostic(message, *self._map_field(index, map_name, key, "key"))
                continue
            where = f"{kind} {key!r} of model {model.name!r}"
            use = _Use(tensor.data_type, tuple(tensor.dims), model.loaded_config.max_batch_size > 0, where)
            reference = self.uses.setdefault(ensemble_tensor, use)
            if use.data_type != reference.data_type:
                message = (
                    f"ensemble tensor {ensemble_tensor!r} is {_type_name(reference.data_type)} as {reference.where} "
                    f"but {_type_name(use.data_type)} as {use.where}"
                )
                yield self.diagnostic(message, *self._map_field(index, map_name, key, "value"))
            elif not use.fits(reference):
                message = (
                    f"ensemble tensor {ensemble_tensor!r} has shape {reference.shape()} as {reference.where} "
                    f"but {use.shape()} as {use.where}"
                )
                yield self.diagnostic(message, *self._map_field(index, map_name, key, "value"))

    def _check_data_flow(self) -> Iterator[Diagnostic]:
        inputs = [tensor.name for tensor in self.config.input]
        outputs = {tensor.name for tensor in self.config.output}
        consumed = {tensor for step in self.steps for tensor in step.input_map.values()}
        for position, name in enumerate(inputs):
            if name not in consumed:
                yield self.diagnostic(f"ensemble input {name!r} is not used by any step", "input", position)
        for position, tensor in enumerate(self.config.output):
            if tensor.name not in self.producers:
                yield self.diagnostic(
                    f"ensemble output {tensor.name!r} is not written by any step", "output", position
                )
        for tensor, index in sorted(self.producers.items()):
            if tensor not in outputs and tensor not in consumed:
                message = (
                    f"ensemble tensor {tensor!r} is written but never read (Triton refuses unused tensors)"
                )
                key = next(k for k, v in self.steps[index].output_map.items() if v == tensor)
                yield self.diagnostic(message, *self._map_field(index, "output_map", key, "value"))
        available = set(inputs)
        pending = dict(enumerate(self.steps))
        progress = True
        while progress:
            ready = [index for index, step in pending.items() if set(step.input_map.values()) <= available]
            for index in ready:
                available |= set(pending.pop(index).output_map.values())
            progress = bool(ready)
        for index, step in sorted(pending.items()):
            missing = sorted(set(step.input_map.values()) - available)
            unproduced = [tensor for tensor in missing if tensor not in self.producers]
            if unproduced:
                reason = f"no step or ensemble input provides {', '.join(repr(t) for t in unproduced)}"
            else:
                waits = ", ".join(f"{tensor!r} from step {self.producers[tensor] + 1}" for tensor in missing)
                reason = f"it waits for {waits}, which cannot run before it (a cycle)"
            message = f"step {index + 1} ({step.model_name!r}) never runs: {reason}"
            yield self.diagnostic(message, *self._step_field(index))


def _check_ensemble_cycles(models: Mapping[str, TritonModel]) -> Iterator[Diagnostic]:
    """Ensembles that use each other (directly or through others) in a circle."""
    graph = {
        name: sorted({step.model_name for step in model.config.ensemble_scheduling.step} & set(models))
        for name, model in models.items()
        if model.is_ensemble
    }
    reported: set[frozenset[str]] = set()
    for start in sorted(graph):
        for cycle in _cycles_from(start, graph):
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                message = "circular dependency between ensembles: " + " -> ".join([*cycle, cycle[0]])
                yield models[start].parsed.diagnostic("ensemble", message, *SCHEDULING)


def _cycles_from(start: str, graph: Mapping[str, Sequence[str]]) -> Iterator[list[str]]:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for successor in graph.get(node, ()):
            if successor == start:
                yield path
            elif successor not in seen and successor in graph:
                seen.add(successor)
                stack.append((successor, [*path, successor]))


def check_top_level_ensemble(model_path: Path, models: Mapping[str, TritonModel]) -> Iterator[Diagnostic]:
    """A model directory with several Triton models has exactly one top-level ensemble for MME to serve."""
    if len(models) < 2:
        return
    ensembles = sorted(name for name, model in models.items() if model.is_ensemble)
    used = {step.model_name for name in ensembles for step in models[name].config.ensemble_scheduling.step}
    top_level = [name for name in ensembles if name not in used]
    if len(top_level) == 1:
        return
    names = ", ".join(sorted(models))
    if not top_level:
        message = (
            f"holds several Triton models ({names}) but no top-level ensemble; SageMaker MME serves the one "
            "ensemble that no other uses: add an ensemble that wires the steps"
        )
        entries = entry_points(models)
        if not ensembles and len(entries) == 1:
            message += f", or a one-step ensemble around {entries[0]}, which no other model calls (`packager adopt` writes one)"
    else:
        message = (
            f"holds {len(top_level)} top-level ensembles ({', '.join(top_level)}); SageMaker MME serves exactly "
            "one: split them into separate model directories or make one use the others"
        )
    yield Diagnostic(model_path, None, None, message, "ensemble")

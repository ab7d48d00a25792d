"""Caffe's Net::FilterNet: keep the layers whose include/exclude rules match the NetState.

A layer with no rules is kept. With `include` rules it is kept when ANY rule matches; with
`exclude` rules it is dropped when ANY rule matches. A rule matches when its phase (if set)
equals the state's, the state's level lies within [min_level, max_level] (where set), every
`stage` is among the state's stages and no `not_stage` is.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelport.errors import FormatError
from modelport.ir import Net
from modelport.schema import caffe_pb2


def make_state(phase: str | int = "test", level: int = 0,
               stages: Iterable[str] = ()) -> caffe_pb2.NetState:
    """Build a NetState from a phase name ('train'/'test') or enum value."""
    if isinstance(phase, str):
        key = phase.upper()
        if key not in ("TRAIN", "TEST"):
            raise FormatError(f"unknown phase '{phase}': use 'train' or 'test'")
        phase_value = caffe_pb2.Phase.Value(key)
    else:
        phase_value = phase
    state = caffe_pb2.NetState(phase=phase_value, level=level)  # type: ignore[arg-type]
    state.stage.extend(stages)
    return state


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def layer_included(layer: caffe_pb2.LayerParameter, state: caffe_pb2.NetState) -> bool:
    """Caffe's rule for one layer: kept when no rule says otherwise, dropped by a matching exclude,
    kept by a matching include (FormatError with both kinds)."""
    if layer.include and layer.exclude:
        raise FormatError(
            f"layer '{layer.name}' (type {layer.type}): has both include and exclude rules. "
            "Fix: specify either include rules or exclude rules, not both"
        )
    included = not layer.include
    for rule in layer.exclude:
        if state_meets_rule(state, rule):
            included = False
    for rule in layer.include:
        if state_meets_rule(state, rule):
            included = True
    return included


def filter_phase(net: Net, state: caffe_pb2.NetState) -> Net:
    """The IR net with only the layers that run in `state` (each layer's LayerParameter keeps
    its include/exclude rules), marked with the state's phase."""
    kept = tuple(layer for layer in net.layers if layer_included(layer.param, state))
    return Net(net.name, kept, net.source, state.phase, net.notes)

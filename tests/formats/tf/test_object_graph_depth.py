"""An object graph whose objects nest in a chain thousands deep (found by `make fuzz`,
tf_object_graph: the layer walk raised a raw RecursionError): a one-line FormatError; a chain
within MAX_DEPTH is walked."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.errors import FormatError
from modelport.formats.tf.object_graph import MAX_DEPTH, OBJECT_GRAPH_KEY, read_object_graph_source
from modelport.schema.tf import trackable_object_graph_pb2 as pb


def _chain(length: int, local_name: str) -> dict[str, np.ndarray]:
    graph = pb.TrackableObjectGraph()
    parent = graph.nodes.add()
    for k in range(length):
        child = parent.children.add()
        child.node_id = k + 1
        child.local_name = local_name
        parent = graph.nodes.add()
    var = graph.nodes.add()
    child = parent.children.add()
    child.node_id, child.local_name = len(graph.nodes) - 1, "kernel"
    attr = var.attributes.add()
    attr.name, attr.checkpoint_key, attr.full_name = "VARIABLE_VALUE", "k", "deep/kernel"
    value = np.empty((), dtype=object)
    value[()] = graph.SerializeToString()
    return {OBJECT_GRAPH_KEY: value, "k": np.zeros(3, np.float32)}


@pytest.mark.parametrize("local_name", ["layer-0", "inner", "0"])
@pytest.mark.parametrize("length", [MAX_DEPTH + 5, 5000])
def test_deep_chain_is_refused(local_name: str, length: int) -> None:
    with pytest.raises(FormatError) as err:
        read_object_graph_source("ckpt", _chain(length, local_name))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"ckpt: the object graph nests objects more than "
                                              f"{MAX_DEPTH} levels deep")


def test_chain_within_the_limit_is_walked() -> None:
    source = read_object_graph_source("ckpt", _chain(MAX_DEPTH - 5, "inner"))
    assert [layer.name for layer in source.layers] == ["deep"]
    assert source.layers[0].variables[0].role == "kernel"

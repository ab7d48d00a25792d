"""The old import path of the loading pipeline's names: `modelport.pipeline` is the module.

`load_net`, `parse_net`, `read_net`, `net_from_param` and `attach_weights` read a net AND run
the passes (phase filter, shared params), so they live above both floors, in
`modelport.pipeline`; the reading itself is `formats/caffe/net_reader`. This alias keeps
`from modelport.formats.caffe.net_loader import load_net` working. It is not a reader: it sits
on the pipeline floor (tests/test_architecture.py), and no module of `formats/` imports it.
New code imports `modelport.pipeline`.
"""

from __future__ import annotations

from modelport.pipeline import attach_weights, load_net, net_from_param, parse_net, read_net

__all__ = ["attach_weights", "load_net", "net_from_param", "parse_net", "read_net"]

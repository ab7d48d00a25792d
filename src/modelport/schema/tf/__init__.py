"""TensorFlow's checkpoint schema, ours: `tensor_bundle.proto` (BundleHeaderProto,
BundleEntryProto, DataType, TensorShapeProto, TensorSliceProto, VersionDef) and
`trackable_object_graph.proto` (TF2 object checkpoints) and `checkpoint_state.proto` (the
`checkpoint` text file), with TensorFlow's field numbers under
the package `modelport.tf` so they coexist with TensorFlow's own descriptors.

Regenerate with `python tools/gen_proto.py` (`--check` tells whether the committed modules are
current). Imports nothing of modelport.
"""

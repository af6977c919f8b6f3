"""Looking at what a model does: criss-cross attention maps per pixel and loop, and figures of them."""

from ccnet.viz.attention import (
    AttentionMaps,
    AttentionRecord,
    attention_maps,
    compose_loops,
    feature_index,
    layer_attention_maps,
    propagate,
    record_attention,
    record_attention_inputs,
)

__all__ = [
    "AttentionMaps",
    "AttentionRecord",
    "attention_maps",
    "compose_loops",
    "feature_index",
    "layer_attention_maps",
    "propagate",
    "record_attention",
    "record_attention_inputs",
]

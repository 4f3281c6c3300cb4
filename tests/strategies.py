"""Cases shared by the tests: hypothesis strategies for AWConv2d configurations of every kind, and
gradient masks."""

from __future__ import annotations

from hypothesis import strategies as st

from awconv.layers import GATES, GENERATORS, PADDING_MODES, POOLS


@st.composite
def layer_configs(draw):
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    in_per_group = 1 if depthwise else draw(st.integers(1, 5))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding_mode = draw(st.sampled_from(PADDING_MODES))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        padding, stride = "same", (1, 1)
        pads = (0, 0)
    else:
        pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        padding = pads
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    # reflect padding needs the input larger than the padding
    min_h = max(1, span[0] - 2 * pads[0], pads[0] + 1, span[0] // 2 + 1)
    min_w = max(1, span[1] - 2 * pads[1], pads[1] + 1, span[1] // 2 + 1)
    return {
        "args": (in_per_group * groups, draw(st.integers(1, 3)) * groups, kernel),
        "kwargs": {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
            "bias": draw(st.booleans()),
            "padding_mode": padding_mode,
            "generator": draw(st.sampled_from(GENERATORS)),
            "rank": draw(st.integers(1, 3)),
            "gate": draw(st.sampled_from(GATES)),
            "pool": draw(st.sampled_from(POOLS)),
            "reduction": draw(st.sampled_from([1, 4, 16])),
            "min_hidden": draw(st.integers(1, 8)),
        },
        "batch": draw(st.integers(1, 3)),
        "size": (draw(st.integers(min_h, min_h + 6)), draw(st.integers(min_w, min_w + 6))),
        "channels_last": draw(st.booleans()),
    }


def one_or_all_but_one(count: int) -> list[list[bool]]:
    """Gradient masks over ``count`` tensors: each tensor alone, then every tensor but one."""
    alone = [[i == j for j in range(count)] for i in range(count)]
    return alone + [[not need for need in mask] for mask in alone]

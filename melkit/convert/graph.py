"""Walking melkit's flat functional Keras graph: the one layer before or after a layer, if there is one.

Range equalisation, compensated rounding and QAT's depthwise equalisation rewrite weights of neighbouring
layers (a conv and its BatchNorm, a ReLU6 and the conv it feeds); each needs to know that the neighbour is
the only one. Keras 2 keeps the graph in private node lists; this is the one place that reads them.
"""

from __future__ import annotations


def single_consumer(layer):
    """The only layer that reads ``layer``'s output, or None if there are none or several."""
    nodes = layer._outbound_nodes  # noqa: SLF001
    return nodes[0].outbound_layer if len(nodes) == 1 else None


def producer(layer):
    """The only layer whose output ``layer`` reads, or None if there are none or several."""
    nodes = layer._inbound_nodes  # noqa: SLF001
    if len(nodes) != 1:
        return None
    inbound = nodes[0].inbound_layers
    return inbound if not isinstance(inbound, (list, tuple)) else (inbound[0] if len(inbound) == 1 else None)

"""Prefix trie over item token sequences, for decoding that can only produce catalogue items.

Each item is a sequence of token ids (its semantic ID in a method's vocabulary). The trie returns
the tokens that may follow a prefix, both one prefix at a time (`allowed_tokens`, and
`prefix_allowed_tokens_fn` for `transformers` `generate`) and for a whole batch of beams as
tensors (`allowed_mask`, `advance`), which is what `seq2seq.constrained_beam_search` uses.

Nodes are numbered from 0 (the root). The frozen layout is compressed sparse rows: the children
of node n are `child_tokens[child_offsets[n]:child_offsets[n + 1]]` (ascending token ids), and
they lead to the nodes `child_nodes` at the same positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

NO_NODE = -1
"""Node index of a beam that left the trie (or never entered it)."""


class PrefixTrie:
    """Trie of token-id sequences, each mapped to a non-negative value (normally an item index).

    Raises ValueError when a value is negative, or when a sequence is empty, has a negative
    token, occurs twice, or is a proper prefix of another sequence, because then a completed
    sequence would be ambiguous.
    """

    def __init__(
        self, sequences: Sequence[Sequence[int]] | np.ndarray, values: Sequence[int] | None = None
    ) -> None:
        sequences = [tuple(int(token) for token in sequence) for sequence in sequences]
        if values is None:
            values = range(len(sequences))
        values = [int(value) for value in values]
        if len(values) != len(sequences):
            raise ValueError(f"Got {len(sequences)} sequences but {len(values)} values.")
        if values and min(values) < 0:
            raise ValueError(f"Values must be non-negative item indices, got {min(values)}.")

        children: list[dict[int, int]] = [{}]
        node_value = [NO_NODE]
        node_depth = [0]
        for sequence, value in zip(sequences, values):
            if not sequence:
                raise ValueError(f"The sequence of value {value} is empty.")
            if min(sequence) < 0:
                raise ValueError(f"The sequence {sequence} of value {value} has a negative token.")
            node = 0
            for token in sequence:
                if node_value[node] != NO_NODE:
                    raise ValueError(
                        f"The sequence of value {node_value[node]} is a prefix of {sequence} "
                        f"(value {value}); sequences must not be prefixes of one another."
                    )
                child = children[node].get(token)
                if child is None:
                    child = len(children)
                    children[node][token] = child
                    children.append({})
                    node_value.append(NO_NODE)
                    node_depth.append(node_depth[node] + 1)
                node = child
            if node_value[node] != NO_NODE:
                raise ValueError(
                    f"Values {node_value[node]} and {value} share the sequence {sequence}; "
                    "resolve collisions before building the trie."
                )
            if children[node]:
                raise ValueError(
                    f"The sequence {sequence} of value {value} is a prefix of another sequence."
                )
            node_value[node] = value

        counts = np.array([len(c) for c in children], dtype=np.int64)
        self.child_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.child_tokens = np.empty(int(counts.sum()), dtype=np.int64)
        self.child_nodes = np.empty(int(counts.sum()), dtype=np.int64)
        for node, node_children in enumerate(children):
            start = self.child_offsets[node]
            for position, token in enumerate(sorted(node_children)):
                self.child_tokens[start + position] = token
                self.child_nodes[start + position] = node_children[token]
        self.node_value = np.asarray(node_value, dtype=np.int64)
        self.node_depth = np.asarray(node_depth, dtype=np.int64)
        self.n_sequences = len(sequences)
        self.token_stride = int(self.child_tokens.max()) + 1 if len(self.child_tokens) else 1
        # Edge keys node * token_stride + token are sorted because nodes are numbered in CSR order
        # and tokens ascend within a node, so a child lookup is one binary search.
        edge_parents = np.repeat(np.arange(len(children), dtype=np.int64), counts)
        self.edge_keys = edge_parents * self.token_stride + self.child_tokens
        # Token range of each depth: the edges leaving nodes of depth d carry tokens of depth d.
        edge_depths = self.node_depth[edge_parents]
        n_depths = int(self.node_depth.max()) if len(self.node_depth) else 0
        self.depth_ranges = [
            (int(self.child_tokens[edge_depths == d].min()), int(self.child_tokens[edge_depths == d].max()) + 1)
            for d in range(n_depths)
        ]
        leaf_depths = self.node_depth[self.node_value != NO_NODE]
        self.depths = tuple(sorted(set(leaf_depths.tolist())))
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def n_nodes(self) -> int:
        return len(self.node_value)

    @property
    def depth(self) -> int:
        """Length of every sequence; raises ValueError when the lengths differ."""
        if len(self.depths) != 1:
            raise ValueError(f"Sequences in this trie have several lengths: {self.depths}.")
        return self.depths[0]

    def depth_token_range(self, depth: int) -> tuple[int, int]:
        """Return (start, stop) such that every token at position `depth` lies in start..stop-1."""
        return self.depth_ranges[depth]

    def child(self, node: int, token: int) -> int:
        """Return the child of `node` reached by `token`, or NO_NODE."""
        if node == NO_NODE:
            return NO_NODE
        start, stop = self.child_offsets[node], self.child_offsets[node + 1]
        position = start + np.searchsorted(self.child_tokens[start:stop], token)
        if position < stop and self.child_tokens[position] == token:
            return int(self.child_nodes[position])
        return NO_NODE

    def walk(self, prefix: Sequence[int]) -> int:
        """Return the node reached by `prefix` from the root, or NO_NODE if it leaves the trie."""
        node = 0
        for token in prefix:
            node = self.child(node, int(token))
            if node == NO_NODE:
                break
        return node

    def is_prefix(self, prefix: Sequence[int]) -> bool:
        """Tell whether `prefix` starts (or equals) at least one sequence; the empty one does."""
        return self.walk(prefix) != NO_NODE

    def allowed_tokens(self, prefix: Sequence[int]) -> list[int]:
        """List the tokens that can follow `prefix`; empty for a complete or invalid prefix."""
        node = self.walk(prefix)
        if node == NO_NODE:
            return []
        start, stop = self.child_offsets[node], self.child_offsets[node + 1]
        return self.child_tokens[start:stop].tolist()

    def value(self, sequence: Sequence[int]) -> int | None:
        """Return the value of a complete sequence, or None if it is not one."""
        node = self.walk(sequence)
        if node == NO_NODE or self.node_value[node] == NO_NODE:
            return None
        return int(self.node_value[node])

    def prefix_allowed_tokens_fn(
        self, decoder_start_token_id: int = 0, eos_token_id: int = 1
    ) -> Callable[[int, torch.Tensor], list[int]]:
        """Build the `prefix_allowed_tokens_fn` argument of `transformers` `generate`.

        The decoder input starts with `decoder_start_token_id`, which is skipped. A complete or
        invalid prefix allows only `eos_token_id`, because `generate` rejects an empty list.
        """

        def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            tokens = input_ids.tolist()
            if tokens and tokens[0] == decoder_start_token_id:
                tokens = tokens[1:]
            return self.allowed_tokens(tokens) or [eos_token_id]

        return allowed

    def _device_tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._tensors:
            self._tensors[key] = {
                "child_offsets": torch.as_tensor(self.child_offsets, device=device),
                "child_tokens": torch.as_tensor(self.child_tokens, device=device),
                "child_nodes": torch.as_tensor(self.child_nodes, device=device),
                "edge_keys": torch.as_tensor(self.edge_keys, device=device),
                "node_value": torch.as_tensor(self.node_value, device=device),
            }
        return self._tensors[key]

    def allowed_mask(
        self, nodes: torch.Tensor, width: int, token_offset: int = 0
    ) -> torch.Tensor:
        """Return a (len(nodes), width) bool mask; column j is token token_offset + j.

        An entry is True when that token may follow the node. Rows of NO_NODE and of leaves are
        all False. Raises ValueError when an allowed token falls outside the columns.
        """
        tensors = self._device_tensors(nodes.device)
        mask = torch.zeros(len(nodes), width, dtype=torch.bool, device=nodes.device)
        rows = torch.nonzero(nodes != NO_NODE).squeeze(1)
        live_nodes = nodes[rows]
        starts = tensors["child_offsets"][live_nodes]
        counts = tensors["child_offsets"][live_nodes + 1] - starts
        edge_rows = torch.repeat_interleave(rows, counts)
        # Position of each edge within its node: a running index minus the start of its block.
        block_starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        within = torch.arange(len(edge_rows), device=nodes.device) - block_starts
        edges = torch.repeat_interleave(starts, counts) + within
        columns = tensors["child_tokens"][edges] - token_offset
        if len(columns) and (int(columns.min()) < 0 or int(columns.max()) >= width):
            raise ValueError(
                f"Allowed tokens fall outside the columns {token_offset}..{token_offset + width - 1}."
            )
        mask[edge_rows, columns] = True
        return mask

    def advance(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Follow one token from each node; NO_NODE where the edge does not exist."""
        tensors = self._device_tensors(nodes.device)
        edge_keys = tensors["edge_keys"]
        keys = nodes * self.token_stride + tokens
        positions = torch.searchsorted(edge_keys, keys).clamp(max=max(len(edge_keys) - 1, 0))
        found = (nodes != NO_NODE) & (tokens >= 0) & (tokens < self.token_stride)
        if len(edge_keys):
            found &= edge_keys[positions] == keys
            children = tensors["child_nodes"][positions]
        else:
            children = torch.full_like(nodes, NO_NODE)
        return torch.where(found, children, torch.full_like(nodes, NO_NODE))

    def values_at(self, nodes: torch.Tensor) -> torch.Tensor:
        """Return the value stored at each node: -1 for NO_NODE and for inner nodes."""
        tensors = self._device_tensors(nodes.device)
        safe = nodes.clamp(min=0)
        values = tensors["node_value"][safe]
        return torch.where(nodes == NO_NODE, torch.full_like(values, -1), values)

"""Prefix trie: construction checks, prefix queries and the batched tensor operations."""

from __future__ import annotations

import pytest
import torch

from clairo_bench.generative.trie import NO_NODE, PrefixTrie

SEQUENCES = [(5, 10, 20), (5, 10, 21), (5, 11, 20), (6, 12, 22)]


def make_trie() -> PrefixTrie:
    return PrefixTrie(SEQUENCES, values=[7, 3, 9, 0])


def test_trie_allowed_tokens_follow_prefixes():
    trie = make_trie()
    assert trie.allowed_tokens([]) == [5, 6]
    assert trie.allowed_tokens([5]) == [10, 11]
    assert trie.allowed_tokens([5, 10]) == [20, 21]
    assert trie.allowed_tokens([6, 12]) == [22]


def test_trie_allowed_tokens_empty_after_complete_or_invalid():
    trie = make_trie()
    assert trie.allowed_tokens([5, 10, 20]) == []
    assert trie.allowed_tokens([6, 10]) == []


def test_trie_prefix_checks():
    trie = make_trie()
    assert trie.is_prefix([])
    assert trie.is_prefix([5, 11])
    assert trie.is_prefix([5, 11, 20])
    assert not trie.is_prefix([5, 12])
    assert not trie.is_prefix([7])


def test_trie_value_of_complete_sequences():
    trie = make_trie()
    assert trie.value([5, 10, 21]) == 3
    assert trie.value([6, 12, 22]) == 0
    assert trie.value([5, 10]) is None
    assert trie.value([5, 10, 22]) is None


def test_trie_depth_and_token_ranges():
    trie = make_trie()
    assert trie.depth == 3
    assert trie.depth_token_range(0) == (5, 7)
    assert trie.depth_token_range(1) == (10, 13)
    assert trie.depth_token_range(2) == (20, 23)


def test_trie_rejects_duplicate_sequences():
    with pytest.raises(ValueError, match="share the sequence"):
        PrefixTrie([(1, 2), (1, 2)])


def test_trie_rejects_prefix_of_another_sequence():
    with pytest.raises(ValueError, match="prefix"):
        PrefixTrie([(1, 2, 3), (1, 2)])
    with pytest.raises(ValueError, match="prefix"):
        PrefixTrie([(1, 2), (1, 2, 3)])


def test_trie_rejects_empty_and_negative():
    with pytest.raises(ValueError, match="empty"):
        PrefixTrie([()])
    with pytest.raises(ValueError, match="negative token"):
        PrefixTrie([(1, -2)])
    with pytest.raises(ValueError, match="non-negative"):
        PrefixTrie([(1, 2)], values=[-1])


def test_trie_depth_raises_for_mixed_lengths():
    trie = PrefixTrie([(1, 2), (3, 4, 5)])
    with pytest.raises(ValueError, match="several lengths"):
        trie.depth


def test_trie_allowed_mask_matches_allowed_tokens():
    trie = make_trie()
    root = 0
    node_5 = trie.walk([5])
    node_5_11 = trie.walk([5, 11])
    leaf = trie.walk([6, 12, 22])
    nodes = torch.tensor([root, node_5, node_5_11, leaf, NO_NODE])
    mask = trie.allowed_mask(nodes, 30)
    assert torch.nonzero(mask[0]).flatten().tolist() == [5, 6]
    assert torch.nonzero(mask[1]).flatten().tolist() == [10, 11]
    assert torch.nonzero(mask[2]).flatten().tolist() == [20]
    assert not mask[3].any()
    assert not mask[4].any()


def test_trie_allowed_mask_with_offset():
    trie = make_trie()
    mask = trie.allowed_mask(torch.tensor([trie.walk([5, 10])]), 3, token_offset=20)
    assert mask.tolist() == [[True, True, False]]
    with pytest.raises(ValueError, match="outside the columns"):
        trie.allowed_mask(torch.tensor([0]), 3, token_offset=20)


def test_trie_advance_and_values():
    trie = make_trie()
    nodes = torch.tensor([0, 0, 0, NO_NODE])
    nodes = trie.advance(nodes, torch.tensor([5, 6, 9, 5]))
    assert nodes[2].item() == NO_NODE
    assert nodes[3].item() == NO_NODE
    nodes = trie.advance(nodes, torch.tensor([10, 12, 10, 10]))
    nodes = trie.advance(nodes, torch.tensor([21, 22, 20, 20]))
    assert trie.values_at(nodes).tolist() == [3, 0, -1, -1]


def test_trie_prefix_allowed_tokens_fn_skips_start_token():
    allowed = make_trie().prefix_allowed_tokens_fn(decoder_start_token_id=0, eos_token_id=1)
    assert allowed(0, torch.tensor([0])) == [5, 6]
    assert allowed(0, torch.tensor([0, 5])) == [10, 11]
    assert allowed(0, torch.tensor([0, 5, 10, 20])) == [1]

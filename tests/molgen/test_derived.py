"""Derived atom features: computed from the noisy graph as network inputs, not diffused."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
import yaml
from rdkit import Chem

from molgen import data as D
from molgen.build import build_nets, build_sdes
from molgen.config import ConfigError, config_differences, dump_config, load_config, validate
from molgen.derived import DerivedAtomFeatures, WithDerivedInput, cycle_counts
from molgen.features import AtomFeatureSpec
from molgen.nets.score import GraphScore

TC = ["type", "charge"]
DERIVED = ["data.atom_features=[type, charge]", "data.max_feat_num=7", "data.derived_features=[num_hs, ring]"]


def test_cycle_counts_match_networkx():
    graphs = [nx.gnp_random_graph(9, p, seed=s) for s in range(40) for p in (0.25, 0.45, 0.7)]
    bonds = torch.tensor(np.stack([nx.to_numpy_array(g) for g in graphs]), dtype=torch.float64)
    got = cycle_counts(bonds)
    for g, counts in zip(graphs, got):
        ref = np.zeros((9, 3))
        for cycle in nx.simple_cycles(g.to_directed()):  # each cycle once per direction
            if 3 <= len(cycle) <= 5:
                ref[cycle, len(cycle) - 3] += 0.5
        assert np.allclose(counts.numpy(), ref)


def test_derived_features_of_a_molecule_are_its_own():
    """On a clean graph the derived hydrogens are RDKit's, and the ring indicators mark 3-, 4-, 5-rings."""
    spec = AtomFeatureSpec.build(TC, dataset="qm9")
    derive = DerivedAtomFeatures(["num_hs", "ring"], spec)
    smiles = ["C[N+](=O)[O-]", "CC1CC1O", "C1COC1", "OC1=CC=CN1", "CC#N", "O=C1CCCCC1"]
    for s in smiles:
        X, A = (torch.from_numpy(a)[None] for a in D.smiles_to_graph(s, "qm9", atom_features=TC))
        out = derive(X, A, D.node_flags(X))[0]
        mol = Chem.MolFromSmiles(s)
        ring = mol.GetRingInfo()
        for atom in mol.GetAtoms():
            i = atom.GetIdx()
            assert out[i, :5].argmax().item() == min(atom.GetTotalNumHs(), 3) + 1, (s, i)
            assert out[i, 5:].tolist() == [float(ring.IsAtomInRingOfSize(i, k)) for k in (3, 4, 5)], (s, i)
        assert not out[mol.GetNumAtoms():].any()
    # an over-valent carbon is flagged as such (the first num_hs column)
    X = torch.zeros(1, 9, 7)
    X[0, :6, 0] = X[0, :6, 5] = 1
    A = torch.zeros(1, 9, 9)
    A[0, 0, 1:6] = A[0, 1:6, 0] = 1.0
    assert derive(X, A, D.node_flags(X))[0, 0, :5].tolist() == [1, 0, 0, 0, 0]


def test_config_validation_and_backward_compatibility():
    cfg = load_config("qm9_can_feat", DERIVED)
    assert cfg.data.input_feat_num("x") == cfg.data.input_feat_num("adj") == 7 + 8 and cfg.data.max_feat_num == 7
    adj_only = load_config("qm9_can_feat", [*DERIVED, "data.derived_networks=[adj]"])
    assert adj_only.data.input_feat_num("x") == 7 and adj_only.data.input_feat_num("adj") == 15
    net_x, net_a = build_nets(adj_only)
    assert not isinstance(net_x, WithDerivedInput) and isinstance(net_a, WithDerivedInput)
    assert yaml.safe_load(dump_config(adj_only))["data"]["derived_networks"] == ["adj"]
    assert "derived_networks" not in yaml.safe_load(dump_config(cfg))["data"]
    with pytest.raises(ConfigError, match="unknown derived feature"):
        load_config("qm9_can_feat", [*DERIVED[:2], "data.derived_features=[spin]"])
    with pytest.raises(ConfigError, match="both diffused"):
        load_config("qm9_can_feat", ["data.derived_features=[num_hs]"])
    with pytest.raises(ConfigError, match="decoder"):
        load_config("qm9_can_feat", ["sampler.decoder=best"])
    # defaults (no derived features, GDSS's decoder) are not dumped: older configs compare equal
    base = load_config("qm9_can_feat")
    dumped = yaml.safe_load(dump_config(base))
    assert "derived_features" not in dumped["data"] and "decoder" not in dumped["sampler"]
    assert validate(dumped).sampler.decoder == "gdss" and config_differences(dumped, base) == []
    valence = load_config("qm9_can_feat", ["sampler.decoder=valence"])
    assert yaml.safe_load(dump_config(valence))["sampler"]["decoder"] == "valence"


@pytest.mark.parametrize("config", ["qm9_gdss_feat", "qm9_can_feat", "qm9_can_feat_ring"])
def test_networks_see_the_derived_features_and_score_x_only(config):
    cfg = load_config(config, DERIVED)
    net_x, net_a = build_nets(cfg)
    assert isinstance(net_x, WithDerivedInput) and isinstance(net_a, WithDerivedInput)
    X, A = (torch.from_numpy(np.stack(a)) for a in zip(*[D.smiles_to_graph(s, "qm9", atom_features=TC)
                                                        for s in ("CC1CC1O", "C[N+](=O)[O-]")]))
    flags = D.node_flags(X)
    score = GraphScore(net_x, net_a, *build_sdes(cfg))
    t = torch.full((2,), 0.5)
    s_x, s_a = score(X, A, flags, t)
    assert s_x.shape == X.shape and s_a.shape == A.shape
    # the wrapped network gets the derived columns: without them its score differs
    kw = {"t": t} if getattr(net_x, "time_conditioned", False) else {}
    blank = torch.cat([X, torch.zeros(*X.shape[:2], 8)], dim=-1)
    assert not torch.allclose(net_x.net(blank, A, flags, **kw), net_x(X, A, flags, **kw))
    # and stay permutation equivariant
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    p_x, p_a = score(X[:, perm], A[:, perm][:, :, perm], flags[:, perm], t)
    assert torch.allclose(p_x, s_x[:, perm], atol=1e-5) and torch.allclose(p_a, s_a[:, perm][:, :, perm], atol=1e-5)

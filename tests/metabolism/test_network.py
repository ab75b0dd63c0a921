import numpy as np
import pytest

from metabolism.config import NetworkConfig, load_config
from metabolism.network import Network, NetworkError, generate_network


@pytest.mark.parametrize("regime", ["oscillatory", "homeostatic", "pure", "mixed_orders"])
def test_invariants_of_shipped_regimes(regime):
    cfg = load_config(regime=regime)
    net = generate_network(cfg.network, seed=7)
    assert net.R.shape == (cfg.network.n_metabolites, cfg.network.n_reactions)
    np.testing.assert_allclose(net.S.sum(0), 0)
    assert (net.R.sum(0) > 0).all(), "every reaction needs a substrate"
    assert ((net.R + net.P).sum(1) > 0).all(), "every metabolite takes part in a reaction"
    assert len({tuple(col) for col in net.R.T}) == net.n_reactions, "reactant sets must be distinct"
    assert (np.log10(net.k) >= cfg.network.log_k_min).all() and (np.log10(net.k) <= cfg.network.log_k_max).all()


def test_autocatalytic_cycles_have_the_stated_form():
    net = generate_network(NetworkConfig(n_metabolites=20, n_reactions=30, cycle_fraction=1.0), seed=1)
    for j in range(net.n_reactions):
        subs = np.flatnonzero(net.R[:, j])
        assert subs.size == 2 and (net.R[subs, j] == 1).all()
        assert sorted(net.S[subs, j].tolist()) == [-1, 1]
        b = subs[net.S[subs, j] == 1][0]
        assert net.P[b, j] == 2


def test_generation_is_deterministic_in_the_seed():
    cfg = NetworkConfig(n_metabolites=30, n_reactions=40, cycle_fraction=0.5)
    a, b, c = (generate_network(cfg, s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.k, b.k)
    assert not np.array_equal(a.R, c.R)


def test_validate_names_a_reaction_without_substrate():
    net = generate_network(NetworkConfig(n_metabolites=10, n_reactions=12), seed=0)
    R = net.R.copy()
    R[:, 4] = 0
    broken = Network(R=R, P=net.P, k=net.k, types=net.types, lam=net.lam, baseline=net.baseline)
    with pytest.raises(NetworkError, match="reaction r4 has no substrate"):
        broken.validate()


def test_too_few_reactions_is_a_clear_error():
    with pytest.raises(NetworkError, match="cannot involve all"):
        generate_network(NetworkConfig(n_metabolites=50, n_reactions=10), seed=0)


def test_mixed_orders_regime_has_reactants_of_both_orders():
    cfg = load_config(regime="mixed_orders")
    net = generate_network(cfg.network, seed=7)
    orders = set(np.unique(net.R[net.R > 0]))
    assert orders == {1.0, 2.0}


def test_imported_networks_need_not_conserve_mass_or_have_distinct_reactant_sets():
    R = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], float)
    P = np.array([[0, 0, 1], [0, 0, 0], [1, 2, 0]], float)  # A + B -> C, A + B -> 2 C, C -> A
    net = Network(R=R, P=P, k=np.ones(3), types=np.zeros(3, int), lam=np.zeros(3), baseline=np.zeros(3))
    net.validate(generated=False)
    with pytest.raises(NetworkError, match="does not sum to zero"):
        net.validate()

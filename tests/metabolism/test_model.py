import numpy as np
import torch

from metabolism.config import ModelConfig, NetworkConfig
from metabolism.model import MetabolismGNN
from metabolism.network import generate_network
from metabolism.simulate import TrueRHS


class PowerLaw(torch.nn.Module):
    def forward(self, c, s):
        return c ** torch.as_tensor(s, dtype=c.dtype)


class TrueNode(torch.nn.Module):
    """MLP_node replaced by the true homeostasis, read through the embedding (a_i = (lambda_i, baseline_i))."""

    def forward(self, x):
        c, lam, base = x[..., 0], x[..., 1], x[..., 2]
        return (-lam * (c - base)).unsqueeze(-1)


def _with_true_functions(aggregation):
    net = generate_network(NetworkConfig(n_metabolites=15, n_reactions=25, cycle_fraction=0.4,
                                         aggregation=aggregation, lambdas=[0.1, 0.3], baselines=[2, 4]), 4)
    model = MetabolismGNN(net, ModelConfig(embedding_dim=2, node_scale=1.0), c_scale=1.0).double()
    model.to_reaction.f_sub = PowerLaw()
    model.node_mlp = TrueNode()
    with torch.no_grad():
        model.embedding.copy_(torch.as_tensor(np.stack([net.lam, net.baseline], 1)))
        model.log_k.copy_(torch.as_tensor(np.log(net.k)))
    return net, model


def test_gnn_with_true_functions_reproduces_dcdt():
    for aggregation in ("multiplicative", "additive"):
        net, model = _with_true_functions(aggregation)
        c = torch.rand(7, net.n_metabolites, dtype=torch.float64) * 5 + 0.1
        np.testing.assert_allclose(model(c).detach().numpy(), TrueRHS(net)(c).numpy(), rtol=1e-12, atol=1e-14)


def test_gauge_is_fixed_by_construction():
    net = generate_network(NetworkConfig(n_metabolites=10, n_reactions=12), 0)
    model = MetabolismGNN(net, ModelConfig(c_ref=2.0)).double()
    s = torch.tensor([1.0, 2.0], dtype=torch.float64)
    value = model.f_sub(torch.full((2,), 2.0, dtype=torch.float64), s)
    np.testing.assert_allclose(value.detach().numpy(), [2.0, 4.0], rtol=1e-12)
    with torch.no_grad():  # any change of the MLP keeps the gauge point
        for p in model.f_sub.parameters():
            p.add_(torch.randn_like(p))
    np.testing.assert_allclose(model.f_sub(torch.full((2,), 2.0, dtype=torch.float64), s).detach().numpy(),
                               [2.0, 4.0], rtol=1e-12)
    assert (model.f_sub(torch.rand(50, dtype=torch.float64) * 9, torch.tensor(1.0)) > 0).all()


def test_model_is_batch_consistent():
    net = generate_network(NetworkConfig(n_metabolites=10, n_reactions=12), 0)
    model = MetabolismGNN(net, ModelConfig()).double()
    c = torch.rand(5, 10, dtype=torch.float64) * 5
    full = model(c)
    np.testing.assert_allclose(full[2:3].detach().numpy(), model(c[2:3]).detach().numpy(), rtol=1e-12)


def test_learned_substrate_function_evaluates_several_orders_at_once():
    """Regression: a network whose reactants have orders 1 and 2 crashed in MLP_sub (expand_as)."""
    net = generate_network(NetworkConfig(n_metabolites=12, n_reactions=20, cycle_fraction=0.0, orders=[1, 2]), 3)
    assert set(np.unique(net.R[net.R > 0])) == {1.0, 2.0}
    model = MetabolismGNN(net, ModelConfig()).double()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.f_sub.parameters():
            p.add_(0.3 * torch.randn_like(p))
    c = torch.rand(4, 12, dtype=torch.float64) * 5 + 0.1
    both = model.f_sub(c.unsqueeze(-1), model.orders)
    assert both.shape == (4, 12, 2)
    for o, s in enumerate(model.orders):
        np.testing.assert_allclose(both[..., o].detach().numpy(), model.f_sub(c, s).detach().numpy(), rtol=1e-12)
    dcdt = model(c)
    assert dcdt.shape == (4, 12) and torch.isfinite(dcdt).all()
    dcdt.sum().backward()


def test_without_the_node_term_the_model_is_its_reactions_alone():
    net = generate_network(NetworkConfig(n_metabolites=10, n_reactions=12), 0)
    model = MetabolismGNN(net, ModelConfig()).double()
    c = torch.rand(5, 10, dtype=torch.float64) * 5
    assert torch.equal(model(c, node=False), model.reaction_term(c))
    assert not torch.allclose(model(c), model(c, node=False))

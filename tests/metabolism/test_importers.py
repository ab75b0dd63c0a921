"""Network import: SBML and COBRA files round-trip the stoichiometry; the conversion counts what it does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metabolism.importers import (REVERSE_SUFFIX, NetworkImportError, convert, load_network, read_network,
                                  read_sbml)
from metabolism.sbml import write_sbml
from metabolism.synthetic import draw_kinetics

FIXTURES = Path(__file__).parent / "fixtures"
TOY = FIXTURES / "toy_network.csv"


@pytest.fixture(scope="module")
def textbook():
    cobra_io = pytest.importorskip("cobra.io")
    return cobra_io.load_model("textbook")


def _cobra_matrix(model):
    from cobra.util.array import create_stoichiometric_matrix

    return create_stoichiometric_matrix(model, array_type="dense")


@pytest.mark.parametrize("suffix", [".json", ".xml"])
def test_cobra_files_round_trip_the_stoichiometry(textbook, tmp_path, suffix):
    import cobra.io

    path = tmp_path / f"core{suffix}"
    (cobra.io.save_json_model if suffix == ".json" else cobra.io.write_sbml_model)(textbook, str(path))
    raw = read_network(path)
    S = raw.stoichiometric_matrix()
    expected = _cobra_matrix(textbook)
    if suffix == ".xml":  # cobra writes SBML ids with M_/R_ prefixes: compare through the ids
        ids = [m[2:] if m.startswith("M_") else m for m in raw.metabolites]
        rxn = [r.id[2:] if r.id.startswith("R_") else r.id for r in raw.reactions]
    else:
        ids, rxn = raw.metabolites, [r.id for r in raw.reactions]
    order_m = [ids.index(m.id) for m in textbook.metabolites]
    order_r = [rxn.index(r.id) for r in textbook.reactions]
    np.testing.assert_array_equal(S[np.ix_(order_m, order_r)], expected)
    assert sum(r.reversible for r in raw.reactions) == sum(r.reversibility for r in textbook.reactions)


def test_sbml_read_by_libsbml_matches_libsbml_counts(textbook, tmp_path):
    import cobra.io
    import libsbml

    path = tmp_path / "core.xml"
    cobra.io.write_sbml_model(textbook, str(path))
    model = libsbml.readSBMLFromFile(str(path)).getModel()
    raw = read_sbml(path)
    assert len(raw.reactions) == model.getNumReactions()
    assert len(raw.metabolites) == model.getNumSpecies()
    assert raw.formulas["M_h2o_c"] == "H2O"


def test_conversion_of_e_coli_core_is_reported(textbook):
    from metabolism.importers import from_cobra

    stoich, report = convert(from_cobra(textbook))
    counts = report.counts()
    assert sorted(report.fixed_species) == ["h2o_c", "h2o_e", "h_c", "h_e"]
    assert counts["excluded_exchange"] == sum(r.boundary for r in textbook.reactions)
    assert report.excluded["biomass"] == ["Biomass_Ecoli_core"]
    assert counts["reversible_split"] == sum(r.reversibility for r in textbook.reactions if not r.boundary
                                            and "Biomass" not in r.id)
    assert stoich.n_metabolites == 68
    # ATPM (atp + h2o -> adp + h + pi) is ATP synthase run backwards once water and protons are fixed:
    # identical rate terms and columns of S, so only their sum is identifiable and they are merged
    assert report.merged == {"ATPM+ATPS4r__rev": ["ATPM", "ATPS4r__rev"]}
    assert "CYTBD" in report.fractional_orders  # 0.5 o2
    assert stoich.n_reactions == counts["reactions_out"]
    assert np.isin(0.5, stoich.R)  # kept as a fractional order


def test_table_import_splits_reversible_reactions_and_fixes_water():
    stoich, report = load_network(TOY)
    assert report.fixed_species == ["h2o"]
    assert report.reversible_split == 1
    assert set(stoich.metabolites) == {"A", "B", "C", "D", "E"}
    j, jr = stoich.reactions.index("R1"), stoich.reactions.index("R1" + REVERSE_SUFFIX)
    np.testing.assert_array_equal(stoich.S[:, j], -stoich.S[:, jr])
    assert stoich.R[stoich.metabolites.index("D"), stoich.reactions.index("R3")] == 2


def test_sbml_export_reimports_to_the_same_stoichiometry(tmp_path):
    stoich, _ = load_network(TOY)
    net = draw_kinetics(stoich, seed=0)
    write_sbml(net, tmp_path / "toy.xml")
    back, report = load_network(tmp_path / "toy.xml", fixed_species=[])
    assert report.counts()["excluded_exchange"] == 2 * net.n_metabolites  # the homeostasis in_/out_ pairs
    np.testing.assert_array_equal(back.R, net.R)
    np.testing.assert_array_equal(back.P, net.P)
    assert back.metabolites == net.metabolites


def test_fractional_orders_can_be_refused(tmp_path):
    path = tmp_path / "frac.csv"
    path.write_text("reaction,metabolite,coefficient\nR1,A,-0.5\nR1,B,1\nR2,B,-1\nR2,A,1\n")
    stoich, report = load_network(path)
    assert report.fractional_orders == ["R1"]
    with pytest.raises(NetworkImportError, match="fractional reactant coefficients"):
        load_network(path, fractional="refuse")


@pytest.mark.parametrize("text,message", [
    ("reaction,metabolite\nR1,A\n", "needs the columns"),
    ("reaction,metabolite,coefficient\nR1,A,abc\n", "row 2, field coefficient"),
    ("reaction,metabolite,coefficient\nR1,A,-1\nR1,,1\n", "row 3: empty"),
    ("reaction,metabolite,coefficient,reversible\nR1,A,-1,maybe\n", "field reversible"),
])
def test_bad_tables_name_the_row_and_field(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(NetworkImportError, match=message):
        read_network(path)


def test_unknown_fixed_species_and_missing_files_are_errors(tmp_path):
    with pytest.raises(NetworkImportError, match="not metabolites of the network"):
        load_network(TOY, extra_fixed=["nadh"])
    with pytest.raises(NetworkImportError, match="not found"):
        read_network(tmp_path / "nope.xml")
    with pytest.raises(NetworkImportError, match="unknown network format"):
        (tmp_path / "net.yaml").write_text("x")
        read_network(tmp_path / "net.yaml")

"""Messages name the user's call chain: a line inside ``forward()`` together with the training or
validation line that called it; owngrad's own frames and library frames never appear."""

from __future__ import annotations

import numpy as np
import pytest

import owngrad as og
from owngrad.sites import Site, format_site, user_site


class Model(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__()
        self.w = g.param(np.ones((3, 3)), name="w")

    def forward(self, x: og.Tensor) -> og.Tensor:
        return (x @ self.w).sum() + (self.w * self.w).sum()  # FORWARD_LINE


def _line_of(marker: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line and "_line_of" not in line)


def _train_step(model: Model, x: og.Tensor) -> og.Tensor:
    return model(x)  # TRAIN_LINE


def _validate(model: Model, x: og.Tensor) -> og.Tensor:
    return model(x)  # VALIDATE_LINE


@pytest.mark.parametrize("caller, marker", [(_train_step, "TRAIN_LINE"), (_validate, "VALIDATE_LINE")])
def test_a_borrow_error_names_the_line_in_forward_and_its_caller(caller: object, marker: str) -> None:
    g = og.Graph()
    model = Model(g)
    x = g.constant(np.ones((2, 3)))
    out = caller(model, x)  # type: ignore[operator]  # kept: a dropped result gives its borrows up
    with pytest.raises(og.BorrowError) as ei:
        with g.no_grad():
            model.w -= 0.1
    msg = str(ei.value)
    fwd, call = _line_of("FORWARD_LINE"), _line_of(marker)
    assert f"test_sites.py:{fwd} in forward, called from test_sites.py:{call} in {caller.__name__}" in msg, msg  # type: ignore[attr-defined]
    assert "modules.py" not in msg and "python" not in msg.lower().split("help")[0], msg
    assert "`out` (live) still needs it" in msg, msg
    del out
    with g.no_grad():
        model.w -= 0.1  # nothing reaches the forward's nodes now: their borrows are given up


def test_pending_nodes_and_dot_show_the_chain() -> None:
    g = og.Graph()
    model = Model(g)
    _train_step(model, g.constant(np.ones((2, 3))))
    sites = [format_site(n.site) for n in g.pending()]
    assert any(f"called from test_sites.py:{_line_of('TRAIN_LINE')}" in s for s in sites), sites


def _call_user_site() -> Site:
    return user_site()  # called as owngrad code would: the frame two up is the user's


def test_a_site_keeps_the_innermost_user_frame_and_its_caller() -> None:
    def a() -> Site:
        return b()

    def b() -> Site:
        return c()

    def c() -> Site:
        return d()

    def d() -> Site:
        return _call_user_site()

    site = a()
    assert [fr[2] for fr in site] == ["d", "c"]
    assert format_site(site).startswith("test_sites.py:") and ", called from " in format_site(site)


def test_a_single_frame_site_formats_as_file_and_line() -> None:
    assert format_site((("/some/dir/train.py", 31, "<module>"),)) == "train.py:31"
    assert format_site((("/a/m.py", 3, "forward"), ("/a/t.py", 9, "<module>"))) == \
        "m.py:3 in forward, called from t.py:9"

"""Plugin cases for captured steps: what the function given to g.capture refuses or bakes in."""

from __future__ import annotations

import numpy as np

import owngrad as og


def captured_steps(g: og.Graph) -> None:
    model = og.nn.Linear(g, 4, 1)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    sched = og.optim.lr_scheduler.StepLR(opt, step_size=1)
    history: list[float] = []

    def logs(x: og.Tensor) -> og.Tensor[og.Mut]:
        loss = (model(x) ** 2).mean()
        opt.step(g.backward(loss))
        history.append(loss.item())
        return loss

    def schedules(x: og.Tensor) -> og.Tensor[og.Mut]:
        loss = (model(x) ** 2).mean()
        opt.step(g.backward(loss))
        sched.step()
        return loss

    def clean(x: og.Tensor) -> og.Tensor[og.Mut]:
        loss = (model(x) ** 2).mean()
        opt.step(g.backward(loss))
        return loss

    a = g.capture(logs)  # E: g.capture(logs): "loss.item()" at line 19 converts a traced tensor to a Python value, which a captured step cannot replay (a GraphError at capture); return the tensor and convert it after the call
    b = g.capture(schedules)  # E: g.capture(schedules): "sched.step()" at line 25 runs at capture only, never at a replay; step the scheduler outside the captured function
    c = g.capture(clean)
    x = g.constant(np.ones((2, 4)))
    history.append(c(x).item())
    sched.step()
    print(a, b, history)

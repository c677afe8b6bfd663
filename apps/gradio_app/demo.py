"""``build_demo()``: the workbench's Gradio Blocks, from its sidebar and one object per tab.

Each tab lays out its components (``layout``) and wires its own events (``wire``); this module
adds what is common to all: refreshing the shown tab when the checkpoint changes or the tab is
opened, each in one callback. (Gradio's page runs the listeners of one event one after the other,
each a round trip to the server, and a ``.then`` only after the callback before it: a checkpoint
switch with a listener per tab took seven round trips, a tab opened two.)

Clicks on plotly points reach Python through a small script that writes the clicked point into a
hidden textbox next to the plot; the same script (``PAGE_JS``) redraws a plot drawn in a hidden tab
at its box's width when the tab is shown.
"""
from __future__ import annotations

import gradio as gr

from apps.gradio_app.context import AppContext, AppSettings, ordered
from apps.gradio_app.sidebar import ClassChoices, Sidebar
from apps.gradio_app.tabs.compare import CompareTab
from apps.gradio_app.tabs.confusion import ConfusionTab
from apps.gradio_app.tabs.curate import CurateTab
from apps.gradio_app.tabs.dicc import DiccTab
from apps.gradio_app.tabs.errors import ErrorsTab
from apps.gradio_app.tabs.instance import InstanceTab
from apps.gradio_app.tabs.pseudo_labels import FAST, PseudoLabelsTab
from apps.gradio_app.tabs.train import TrainTab

PAGE_JS = """
() => {
  // a plot drawn while its tab was hidden has plotly's default width: redraw it at its box's width once
  // the box is shown (plotly's responsive plots listen to the window's resize event)
  const fit = () => {
    document.querySelectorAll('[data-testid="plotly"]').forEach((div) => {
      const box = div.parentElement;
      if (!box || div.__pldcFit) return;
      div.__pldcFit = true;
      let width = box.clientWidth;
      new ResizeObserver(() => {
        if (box.clientWidth > 0 && box.clientWidth !== width) {
          width = box.clientWidth;
          window.dispatchEvent(new Event('resize'));
        }
      }).observe(box);
    });
  };
  const attach = () => {
    fit();
    document.querySelectorAll('.pldc-clickable [data-testid="plotly"]').forEach((div) => {
      if (div.__pldcClick || typeof div.on !== 'function') return;
      div.__pldcClick = true;
      div.on('plotly_click', (ev) => {
        const p = ev && ev.points && ev.points[0];
        const host = div.closest('.pldc-clickable');
        const box = host && document.querySelector('#' + host.id + '-click textarea');
        if (!p || !box) return;
        const cd = p.customdata ?? null;  // plotly gives numeric arrays as typed arrays
        box.value = JSON.stringify({x: p.x, y: p.y, customdata: ArrayBuffer.isView(cd) ? Array.from(cd) : cd,
                                    name: (p.data && p.data.name) || '', t: Date.now()});
        box.dispatchEvent(new Event('input', {bubbles: true}));
      });
    });
  };
  // Gradio's plot re-creates its plotly component for every new figure (a keyed block), after the old
  // component has drawn it: each figure was drawn twice, once into a div about to be removed. Draw after
  // the page's update has settled, and only into divs still on the page.
  const drawOnce = () => {
    const P = window.Plotly;
    if (!P || P.__pldcDrawOnce) return;
    P.__pldcDrawOnce = true;
    const later = (draw) => function (gd, ...rest) {
      return new Promise((resolve) => setTimeout(
        () => resolve(gd && gd.isConnected === false ? gd : draw.call(P, gd, ...rest)), 0));
    };
    P.__pldcReactNow = P.react;
    P.react = later((...args) => P.__pldcReactNow(...args));
    P.Plots.resize = later(P.Plots.resize);
  };
  const plotlyReady = setInterval(() => {
    drawOnce();
    if (window.Plotly) clearInterval(plotlyReady);
  }, 10);
  setInterval(attach, 400);
}
"""

CSS = """
.pldc-message p { margin: 0.2em 0; }
.pldc-error { color: #b00020; }
.pldc-progress { width: 100%; height: 16px; }
#pldc-sidebar-runs { font-size: 12px; }
"""


class App:
    """The workbench on one runs folder and one data folder: the shared context, the sidebar, the tabs.

    ``build_demo`` lays it out; the components the parts share (``run_dd``, ``ckpt_dd``,
    ``browse_state``, ``tabs`` ...) become attributes of this object as it does.
    """

    def __init__(self, settings: AppSettings):
        self.ctx = AppContext(settings)
        self.train = TrainTab(self.ctx)
        self.pseudo_labels = PseudoLabelsTab(self.ctx)
        self.instance = InstanceTab(self.ctx)
        self.confusion = ConfusionTab(self.ctx)
        self.errors = ErrorsTab(self.ctx)
        self.dicc = DiccTab(self.ctx)
        self.compare = CompareTab(self.ctx)
        self.curate = CurateTab(self.ctx)
        self.sidebar = Sidebar(self.ctx, self.train.live)

    @property
    def parts(self) -> list:
        """The tabs in display order."""
        return [self.train, self.pseudo_labels, self.instance, self.confusion, self.errors, self.dicc, self.compare,
                self.curate]

    def when_shown(self, tab_id: str, fn, n_outputs: int):
        """``fn`` for an event that only matters while tab ``tab_id`` is shown (otherwise nothing is sent)."""
        def wrapped(current, *args):
            if current != tab_id:
                return (gr.skip(),) * n_outputs if n_outputs > 1 else gr.skip()
            return fn(*args)
        return wrapped

    @property
    def refreshed(self) -> list:
        """The tabs a checkpoint change refreshes while shown (Compare follows its own A side)."""
        return [self.pseudo_labels, self.confusion, self.errors, self.dicc, self.curate]

    def checkpoint_inputs(self) -> list:
        """``checkpoint_chosen``'s inputs: the shown tab, the run and checkpoint, each refreshed tab's inputs."""
        return [self.current_tab, self.run_dd, self.ckpt_dd,
                *(c for part in self.refreshed for c in part.refresh_inputs(self))]

    def checkpoint_outputs(self) -> list:
        """``checkpoint_chosen``'s outputs: the sidebar's summary and class choices, Compare's A side, each
        refreshed tab's outputs."""
        sidebar = [self.sidebar.summary, *ordered(ClassChoices, listing=self.pseudo_labels.cls,
                                                  instance=self.instance.relabel_class,
                                                  curate=self.curate.relabel_class)]
        return sidebar + [self.compare.it_a] + [c for part in self.refreshed for c in part.outputs]

    def checkpoint_chosen(self, current, run_name, iteration, *values) -> tuple:
        """A checkpoint (or run) chosen: the sidebar's summary and class choices, Compare's A side (which
        refreshes Compare when it is shown), and the shown tab's refresh (the other tabs' outputs skipped:
        they refresh when opened), in ``checkpoint_outputs`` order."""
        out = [self.sidebar.checkpoint_summary(run_name, iteration), *self.sidebar.class_choices(run_name, iteration),
               gr.Dropdown(value=iteration)]
        for part in self.refreshed:
            n = len(part.refresh_inputs(self))
            args, values = values[:n], values[n:]
            out += list(part.show(*args)) if current == part.id else [gr.skip()] * len(part.outputs)
        return tuple(out)

    def tab_opened(self, part):
        """The callback of opening ``part``'s tab: the shown tab's name, then the tab's refresh if it has one."""
        if not hasattr(part, "show"):
            return lambda: part.id

        def opened(*args):
            return (part.id, *part.show(*args))
        return opened


def build_demo(settings: AppSettings) -> gr.Blocks:
    """The Gradio Blocks of the workbench (not launched)."""
    app = App(settings)
    initial_tab = "pl" if settings.initial_run else "train"
    with gr.Blocks(title="PL-DC Workbench", fill_width=True) as demo:
        app.demo = demo
        app.browse_state = gr.State(None)
        app.tick_state = gr.State(None)
        app.current_tab = gr.State(initial_tab)
        with gr.Sidebar(open=True, width=360):
            app.sidebar.layout(app)
        tab_of = {}
        with gr.Tabs(selected=initial_tab, elem_id="main-tabs") as app.tabs:
            for part in app.parts:
                with gr.Tab(part.label, id=part.id) as tab_of[part.id]:
                    part.layout(app)
        for part in (app.sidebar, *app.parts):
            part.wire(app)

        # the sidebar, Compare's A side and the shown tab follow the checkpoint (and the run: see
        # Sidebar.run_chosen), in one callback; Compare follows its A side (CompareTab.wire)
        for event in (app.ckpt_dd.change, app.sidebar.run_chosen.then):
            event(app.checkpoint_chosen, app.checkpoint_inputs(), app.checkpoint_outputs(), **FAST)
        app.sidebar.run_chosen.then(app.when_shown(app.compare.id, app.compare.show, len(app.compare.outputs)),
                                    [app.current_tab, *app.compare.refresh_inputs(app)], app.compare.outputs,
                                    show_progress="hidden")
        # a tab opened is brought up to date in the same callback that records it as the shown one
        for part in app.parts:
            refresh = part.refresh_inputs(app) if hasattr(part, "show") else []
            outputs = part.outputs if hasattr(part, "show") else []
            tab_of[part.id].select(app.tab_opened(part), refresh, [app.current_tab, *outputs], **FAST)
    return demo

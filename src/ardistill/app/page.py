"""The gradio page of `ardistill app` (the field's convention: LlamaGen ships one too).

    demo = build_page(AppOptions(teachers=("mnist-llamagen", "mnist-var")))
    launch(demo, host="127.0.0.1", port=7860)

Everything shown comes from `app.compare.Comparer`; the page adds only widgets: the teacher,
classes or a caption file, seed, count and methods in, one gallery per method out (PNG, not
re-encoded), the timing table, and a progress bar for the teacher's AR steps. A bad input (a
missing checkpoint, a student of another teacher) is a readable line in the page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ardistill.app.compare import APP_METHODS, MAX_COUNT, Comparer, Request, timing_table
from ardistill.errors import USER_ERRORS, message

DEFAULT_METHODS = ("teacher", "DD 1-step", "DD 2-step")
_CSS = """
.ard-gallery img {image-rendering: pixelated;}
"""


@dataclass(frozen=True)
class AppOptions:
    """teachers: the choices of the teacher menu (the first is selected; a user may also type
    another spec); tokenizer_ckpt: the VQ file of official presets; students: default student
    files by app method name; device, dtype: where the models run; int8: LlamaGen and VAR
    linears (teachers' transformers and students) in int8 on the CPU (`ardistill sample
    --int8`)."""

    teachers: tuple[str, ...] = ("mnist-llamagen", "mnist-var", "mnist-t2i")
    tokenizer_ckpt: str | None = None
    students: tuple[tuple[str, str], ...] = ()
    device: str = "cpu"
    dtype: str = "auto"
    int8: bool = False


def slug(name: str) -> str:
    """An element id piece of a method name: "DD 1-step" -> "dd-1-step", "onestep*" ->
    "onestep-star"."""
    return name.lower().replace("*", "-star").replace(" ", "-")


def _involved(text: str) -> tuple[int, int] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        n, m = (int(x) for x in text.split(","))
    except ValueError as e:
        raise ValueError(f"teacher-involved: give N,M like 0,20, got {text!r}") from e
    return n, m


def build_page(opts: AppOptions, comparer: Comparer | None = None):
    """The gradio Blocks of the app (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    comparer = comparer or Comparer(opts.device, opts.dtype, opts.int8)
    defaults = dict(opts.students)
    with gr.Blocks(title="ardistill app", analytics_enabled=False) as page:
        gr.Markdown("## ardistill: a teacher and its distilled students, side by side\n"
                    "Every method gets the same noise, labels and seed; seconds per image "
                    "include VQ decoding (this request, one batch).")
        with gr.Row():
            teacher = gr.Dropdown(list(opts.teachers), value=opts.teachers[0],
                                  allow_custom_value=True, label="teacher", elem_id="teacher")
            classes = gr.Textbox("balanced", label="classes (ids like 3 or 1,7, or balanced)",
                                 elem_id="classes")
            captions = gr.Textbox("", label="caption file (text-conditional teachers)",
                                  elem_id="captions")
            prompts = gr.Textbox("", lines=2, label="prompts, one a line (mnist-t2i: e.g. "
                                 "'a thick seven leaning left')", elem_id="prompts")
            seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
            count = gr.Slider(1, MAX_COUNT, value=8, step=1, label="images per method",
                              elem_id="count")
        methods = gr.CheckboxGroup(list(APP_METHODS), value=list(DEFAULT_METHODS),
                                   label="methods", elem_id="methods")
        with gr.Accordion("settings", open=False):
            with gr.Row():
                skip_k = gr.Number(1, precision=0, label="k of skip-k", elem_id="skip-k")
                involved = gr.Textbox("", label="teacher-involved N,M (empty: 0,t2)",
                                      elem_id="involved")
            with gr.Row():
                student_boxes = {
                    name: gr.Textbox(defaults.get(name, ""), elem_id=f"student-{slug(name)}",
                                     label=f"{name} student file (empty: the shipped one)")
                    for name in ("DD 1-step", "DD 2-step", "DD2 1-step")}
        run = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown("", elem_id="status")
        timings = gr.Markdown("", elem_id="timings")
        columns, titles, galleries = [], [], []
        with gr.Row(equal_height=False):
            for name in APP_METHODS:
                with gr.Column(visible=False, min_width=160) as col:
                    titles.append(gr.Markdown(f"**{name}**", elem_id=f"title-{slug(name)}"))
                    galleries.append(gr.Gallery(format="png", columns=2, height=420,
                                                show_label=False, object_fit="contain",
                                                elem_id=f"gallery-{slug(name)}",
                                                elem_classes=["ard-gallery"]))
                columns.append(col)

        def generate(teacher_v, classes_v, captions_v, prompts_v, seed_v, count_v, methods_v,
                     skip_v, involved_v, s1, s2, s3,
                     progress=gr.Progress()):  # noqa: B008 (gradio)
            hidden = [gr.update(visible=False)] * len(APP_METHODS)
            blank = [gr.update()] * len(APP_METHODS)
            try:
                students = {k: v.strip() for k, v in zip(student_boxes, (s1, s2, s3))
                            if v and v.strip()}
                req = Request(str(teacher_v or "").strip(), tuple(methods_v or ()),
                              classes=classes_v or "balanced", seed=int(seed_v or 0),
                              count=int(count_v), captions=(captions_v or "").strip() or None,
                              prompts=prompts_v or None,
                              skip_k=int(skip_v or 1), involved=_involved(involved_v),
                              students=students, tokenizer_ckpt=opts.tokenizer_ckpt)
                if not req.teacher or not req.methods:
                    raise ValueError("pick a teacher and at least one method")
                panels = comparer.compare(req, on_step=lambda n, d, t: progress(
                    (d, t), desc=f"{n}: AR step {d}/{t}"))
            except USER_ERRORS as e:
                return ["**error:** " + message(e), ""] + hidden + blank + blank
            by_name = {p.method: p for p in panels}
            vis, heads, imgs = [], [], []
            for name in APP_METHODS:
                p = by_name.get(name)
                vis.append(gr.update(visible=p is not None))
                if p is None:
                    heads.append(gr.update())
                    imgs.append(gr.update(value=None))
                elif p.error:
                    heads.append(f"**{name}**  \nerror: {p.error}")
                    imgs.append(gr.update(value=None))
                else:
                    sp = "" if p.speedup is None else f", {p.speedup:.1f}x"
                    heads.append(f"**{p.label}**  \n{p.seconds_per_image:.4f} s / image{sp}")
                    imgs.append([(im, str(lab)) for im, lab in zip(p.images, p.labels)])
            errors = [p for p in panels if p.error]
            text = (f"{len(panels) - len(errors)} of {len(panels)} methods done "
                    f"({req.teacher}, seed {req.seed}, {req.count} images each)")
            if errors:
                text += "; **error:** " + "; ".join(f"{p.method}: {p.error}" for p in errors)
            return [text, timing_table(panels)] + vis + heads + imgs

        run.click(generate, [teacher, classes, captions, prompts, seed, count, methods, skip_k,
                             involved, *student_boxes.values()],
                  [status, timings, *columns, *titles, *galleries])
    return page


def launch(page, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve the page on host:port (loopback by default; no share link, no analytics)."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    return page.queue().launch(server_name=host, server_port=port, share=False,
                               inbrowser=False, prevent_thread_lock=not block, theme=theme,
                               css=_CSS, footer_links=[], quiet=False)

"""One-page clinician report: a self-contained HTML file (images inlined as base64 PNG), optional PDF.

Why self-contained: it must open offline on any workstation and be attachable to an e-mail. Why a
header whitelist: the report may leave the research setting, so only technical, non-identifying
fields of the image header are printed (never names, IDs, dates, institutions, free text), and the
"Research use only — not a medical device." notice sits at the top of the page.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from spine_models.models.cards import validation_badge

__all__ = ["DISCLAIMER", "SAFE_HEADER_KEYS", "safe_header", "png_data_uri", "clinician_html",
           "write_clinician_report", "clinician_pdf", "pdf_figures"]

DISCLAIMER = "Research use only — not a medical device."
# technical header fields that identify nobody; everything else is dropped
SAFE_HEADER_KEYS = ("format", "kind", "modality", "view", "width", "height", "bits", "photometric",
                    "pixel_spacing_mm", "frames")
COBB_BAND_DEG = 5.0


def safe_header(header: dict[str, Any] | None) -> dict[str, Any]:
    """Only whitelisted technical fields (no names, IDs, dates, institutions, file names)."""
    out: dict[str, Any] = {}
    for k in SAFE_HEADER_KEYS:
        if header and k in header and header[k] is not None and not isinstance(header[k], (dict, bytes)):
            out[k] = header[k]
    return out


def png_data_uri(rgb: np.ndarray, max_side: int = 768) -> str:
    """RGB/gray uint8 (or float) image -> ``data:image/png;base64,...`` (downscaled to ``max_side``)."""
    import cv2

    from spine_models.results.base import to_rgb_uint8

    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim == 2:
        a = to_rgb_uint8(a)
    h, w = a.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", a[..., ::-1] if a.ndim == 3 else a)
    if not ok:
        raise ValueError("PNG encoding of the overlay failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _card_map(cards: Iterable[Any] | None) -> dict[str, Any]:
    return {getattr(c, "id", ""): c for c in (cards or [])}


def _overlay(result: Any, image: np.ndarray | None) -> np.ndarray | None:
    """The result's own drawing on the film, with the Cobb endplate lines when it measured one (the page's lines)."""
    if image is None or not hasattr(result, "plot"):
        return None
    try:
        out = result.plot(image)
    except (ValueError, TypeError, IndexError):  # a result from another image size: show no overlay
        return None
    cobb = (getattr(result, "measurements", None) or {}).get("cobb")
    if isinstance(cobb, dict):
        from spine_models.report.drawing import cobb_overlay

        out = cobb_overlay(out, cobb)
    return out


def _cobb_html(cobb: dict[str, Any]) -> str:
    from spine_models.measure import cobb_read

    r = cobb_read({"cobb_deg": cobb.get("angle_deg"), **cobb} if "cobb_deg" not in cobb else cobb)
    if not r.ok:  # a failed or unreliable read is never shown as a finding
        return f"<p class='big'>Cobb angle: <b>cannot measure</b> — {_esc(r.reason)}</p>"
    angle = r.value
    band = cobb.get("band") or [max(0.0, angle - COBB_BAND_DEG), angle + COBB_BAND_DEG]
    rows = "".join(
        f"<tr><td>{_esc(c.get('name', ''))}</td><td>{_esc(c.get('upper_end', ''))}–{_esc(c.get('lower_end', ''))}</td>"
        f"<td>{float(c.get('angle_deg', 0)):.1f}°</td><td>{float(c['band'][0]):.1f}–{float(c['band'][1]):.1f}°</td></tr>"
        for c in cobb.get("curves", []) if "band" in c)
    table = (f"<table><tr><th>curve</th><th>end vertebrae</th><th>Cobb</th><th>±{COBB_BAND_DEG:.0f}° band</th></tr>"
             f"{rows}</table>") if rows else ""
    return (f"<p class='big'>Cobb angle <b>{float(angle):.1f}°</b> (manual readings typically within ±{COBB_BAND_DEG:.0f}°: "
            f"{float(band[0]):.1f}–{float(band[1]):.1f}°)</p>{table}")


def _slip_html(slip: Any) -> str:
    if isinstance(slip, dict) and "slip_percent" in slip:  # a slip_from_mask read: its finding, or why there is none
        from spine_models.measure import slip_read

        r = slip_read(slip)
        if not r.ok:
            return f"<h4>Slip (spondylolisthesis)</h4><p class='big'>Slip: <b>cannot measure</b> — {_esc(r.reason)}</p>"
        levels = "".join(f"<tr><td>{_esc(k)}</td><td>{float(v):.1f}%</td></tr>" for k, v in (slip.get("levels") or {}).items())
        return (f"<h4>Slip (spondylolisthesis)</h4><p class='big'>Slip at {_esc(slip.get('level'))}: <b>{_esc(r.text)}</b> "
                f"(Meyerding grade {_esc(slip.get('meyerding', slip.get('meyerding_grade')))})</p>"
                + (f"<table><tr><th>level</th><th>slip</th></tr>{levels}</table>" if levels else ""))
    if isinstance(slip, dict):
        items = slip.items()
    else:
        return f"<p>Slip: {_esc(slip)}</p>"
    rows = []
    for k, v in items:
        if isinstance(v, dict):
            pct = v.get("slip_percent", v.get("percent"))
            grade = v.get("meyerding_grade", v.get("grade"))
            desc = ", ".join(x for x in (f"{float(pct):.1f}%" if isinstance(pct, (int, float)) else "",
                                         f"Meyerding grade {_esc(grade)}" if grade is not None else "") if x)
            rows.append(f"<tr><td>{_esc(k)}</td><td>{desc or _esc(v)}</td></tr>")
        else:
            rows.append(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>")
    return f"<h4>Slip (spondylolisthesis)</h4><table>{''.join(rows)}</table>"


def _result_html(result: Any, image: np.ndarray | None, card: Any | None) -> str:
    d = result.to_dict()
    sha = getattr(card, "sha256", "") or ""
    model_line = (f"<p class='meta'>model <code>{_esc(d.get('model_id', ''))}</code>"
                  + (f" · arch {_esc(card.arch)}" if card is not None else "")
                  + (f" · sha256 <code>{_esc(sha)}</code>" if sha else "") + "</p>"
                  + (f"<p class='meta validation'>validation: {_esc(validation_badge(card))}</p>" if card is not None else ""))
    body = []
    kind = d.get("type", "")
    if kind == "ClassificationResult" and d.get("abstained"):
        body.append(f"<p class='big'>Finding: <b>no answer</b> — {_esc(d.get('note', ''))}</p>")
    elif kind == "ClassificationResult":
        probs = d.get("probs", {})
        rows = "".join(f"<tr><td>{_esc(c)}</td><td>{float(p) * 100:.1f}%</td>"
                       f"<td><div class='bar' style='width:{float(p) * 100:.0f}%'></div></td></tr>"
                       for c, p in probs.items())
        thr = d.get("threshold")
        body.append(f"<p class='big'>Finding: <b>{_esc(d.get('prediction', ''))}</b></p>"
                    + (f"<p class='meta'>decision threshold {float(thr):.3f} on the positive class</p>" if thr is not None else "")
                    + f"<table><tr><th>class</th><th>probability</th><th></th></tr>{rows}</table>")
    elif kind == "DetectionResult":
        findings = d.get("findings", {})
        items = "".join(f"<li>{_esc(c)}: <b>{'present' if v else 'not detected'}</b></li>" for c, v in findings.items())
        n_boxes = sum(1 for b in d.get("boxes", []) if b.get("score", 0) >= d.get("threshold", 0.5))
        body.append(f"<ul>{items}</ul><p class='meta'>{n_boxes} box(es) at score ≥ {float(d.get('threshold', 0.5)):.2f}</p>")
    elif kind == "SegmentationResult":
        meas = d.get("measurements") or {}
        structures = d.get("structures", [])
        if isinstance(meas.get("cobb"), dict) or "pedicle" in structures:  # an AP model that found no body says so
            body.append(_cobb_html(meas.get("cobb") or {}))
        if meas.get("slip") is not None or "disc_height" in structures:
            body.append(_slip_html(meas.get("slip") or {"slip_percent": None}))
        other = {k: v for k, v in meas.items() if k not in ("cobb", "slip")}
        if other:
            body.append("<h4>Other measurements</h4><table>" + "".join(
                f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in other.items()) + "</table>")
        body.append("<p class='meta'>structures: " + _esc(", ".join(d.get("structures", []))) + "</p>")
    ov = _overlay(result, image)
    img = f"<img alt='overlay' src='{png_data_uri(ov)}'>" if ov is not None else ""
    return (f"<section><h3>{_esc(kind.replace('Result', ''))}</h3>{model_line}"
            f"<div class='row'><div class='col'>{''.join(body)}</div><div class='col'>{img}</div></div></section>")


def _findings_html(results: Sequence[Any], cards: Iterable[Any] | None) -> str:
    """The findings panel (``report.findings``): one line per finding, then every model's say with its provenance."""
    from spine_models.report.findings import findings

    found = findings(results, cards)
    if not found:
        return ""
    lines = []
    for f in found:
        lines.append(f"<li class='big'><b>{_esc(f.headline)}</b> <span class='meta'>({_esc(f.agreement)}; from "
                     f"<code>{_esc(f.lead.model_id)}</code>, {_esc(f.lead_source)})</span></li>")
    rows = "".join(f"<tr><td>{_esc(f.name)}</td><td><code>{_esc(v.model_id)}</code></td><td>{_esc(v.says)}</td>"
                   f"<td>{_esc(v.detail)}</td><td>{_esc(v.badge)}</td></tr>" for f in found for v in f.votes)
    return (f"<section class='findings'><h2>Findings</h2><ul>{''.join(lines)}</ul>"
            f"<table><tr><th>finding</th><th>model</th><th>says</th><th>detail</th><th>where validated</th></tr>{rows}"
            "</table></section>")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:960px;color:#111}
.disclaimer{background:#b00020;color:#fff;font-weight:700;font-size:1.25em;padding:10px 16px;border-radius:6px;text-align:center}
h1{font-size:1.4em;margin:16px 0 4px} h2{font-size:1.2em;margin:14px 0 4px} h3{margin:6px 0} h4{margin:10px 0 4px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.92em}
.bar{background:#1565c0;height:10px;min-width:1px} .meta{color:#555;font-size:.85em} .big{font-size:1.15em}
section{border-top:1px solid #ddd;padding-top:8px;margin-top:12px}
.row{display:flex;gap:16px;flex-wrap:wrap} .col{flex:1 1 380px} img{max-width:100%;border:1px solid #ccc}
code{font-size:.8em;word-break:break-all}
"""


def clinician_html(results: Sequence[Any], *, image: np.ndarray | None = None, header: dict[str, Any] | None = None,
                   cards: Iterable[Any] | None = None, title: str = "Spine Lab — model findings") -> str:
    """The page as an HTML string: disclaimer, de-identified header, findings per model with overlays."""
    cmap = _card_map(cards)
    hdr = safe_header(header)
    hdr_rows = "".join(f"<tr><th>{_esc(k.replace('_', ' '))}</th><td>{_esc(v)}</td></tr>" for k, v in hdr.items())
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = "".join(_result_html(r, image, cmap.get(getattr(r, "model_id", ""))) for r in results)
    if not sections:
        sections = "<p>No model results.</p>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>"
            f"<div class='disclaimer' role='alert'>{_esc(DISCLAIMER)}</div>"
            f"<h1>{_esc(title)}</h1><p class='meta'>generated {when} by spine-models; findings are model outputs, "
            f"not a diagnosis, and must be reviewed by a qualified reader.</p>"
            f"<h3>Image</h3><table>{hdr_rows}</table>{_findings_html(results, cmap.values())}"
            f"<h2>Each model's output</h2>{sections}"
            f"<p class='disclaimer' style='font-size:1em;margin-top:20px'>{_esc(DISCLAIMER)}</p></body></html>")


def write_clinician_report(path: str | Path, results: Sequence[Any], *, image: np.ndarray | None = None,
                           header: dict[str, Any] | None = None, cards: Iterable[Any] | None = None,
                           pdf: bool = False) -> Path:
    """Write the HTML page (and ``<same name>.pdf`` when ``pdf``); returns the HTML path."""
    cards = list(cards or [])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(clinician_html(results, image=image, header=header, cards=cards), encoding="utf-8")
    if pdf:
        clinician_pdf(p.with_suffix(".pdf"), results, image=image, header=header, cards=cards)
    return p


def _wrapped(text: str, width: int = 100) -> list[str]:
    """A PDF text line wrapped (indented) so a long reason is shown whole, not cut off."""
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent="  ", subsequent_indent="    ") or [""]


PDF_LINE = 0.0135  # one 9-pt text line as a share of the A4 page height (9 pt x 1.25 leading / 842 pt)
PDF_LINES_PER_PAGE = 68


def _model_lines(results: Sequence[Any], cmap: dict[str, Any]) -> list[str]:
    """Each model's own output as text lines (the PDF's detail pages)."""
    from spine_models.measure import cobb_read, slip_read

    lines: list[str] = []
    for r in results:
        d = r.to_dict()
        card = cmap.get(d.get("model_id", ""))
        lines.append("")
        lines.append(f"{d.get('type', '').replace('Result', '')} — model {d.get('model_id', '')}")
        if card is not None and getattr(card, "sha256", ""):
            lines.append(f"  sha256 {card.sha256[:16]}…")
        if card is not None:  # a phantom-only model says so on the printed page too
            lines += _wrapped(f"validation: {validation_badge(card)}")
        if d.get("abstained"):
            lines += _wrapped(f"finding: no answer — {d.get('note', '')}")
        elif "prediction" in d:
            thr = d.get("threshold")
            lines += _wrapped(f"finding: {d['prediction']}  (" + ", ".join(f"{c} {float(p) * 100:.1f}%" for c, p in d['probs'].items())
                              + ")" + (f"; decision threshold {float(thr) * 100:.1f}% on the positive class" if thr is not None else ""))
        if "findings" in d:
            lines.append("  " + ", ".join(f"{c}: {'present' if v else 'not detected'}" for c, v in d["findings"].items()))
        meas = d.get("measurements") or {}
        structures = d.get("structures", [])
        cobb, slip = meas.get("cobb"), meas.get("slip")
        kind_seg = d.get("type") == "SegmentationResult"
        if isinstance(cobb, dict) or (kind_seg and "pedicle" in structures):  # an AP model that found no body says so
            rc = cobb_read(cobb if isinstance(cobb, dict) else None)
            lines += _wrapped(f"Cobb angle {rc.value:.1f}° (±{COBB_BAND_DEG:.0f}° inter-observer band)" if rc.ok
                              else f"Cobb angle: {rc.text}")
        if (isinstance(slip, dict) and "slip_percent" in slip) or (slip is None and kind_seg and "disc_height" in structures):
            rs = slip_read(slip)
            lines += _wrapped(f"slip at {slip.get('level')}: {rs.text} (Meyerding grade {slip.get('meyerding')})" if rs.ok
                              else f"slip: {rs.text}")
        elif slip is not None:
            lines.append(f"  slip: {slip}"[:110])
    return lines


def _findings_lines(results: Sequence[Any], cards: Iterable[Any] | None) -> list[str]:
    """The findings panel as text lines (the PDF's first page)."""
    from spine_models.report.findings import findings

    lines = ["FINDINGS"]
    found = findings(results, cards)
    if not found:
        lines.append("  no model that ran speaks about scoliosis, spondylolisthesis or implants")
    for f in found:
        lines += _wrapped(f"{f.headline}  [{f.agreement}; from {f.lead.model_id}, {f.lead_source}]")
    return lines


def pdf_figures(results: Sequence[Any], *, image: np.ndarray | None = None, header: dict[str, Any] | None = None,
                cards: Iterable[Any] | None = None, title: str = "Spine Lab — model findings") -> list[Any]:
    """The PDF's pages as matplotlib Figures: page 1 banner, title, header, findings and the film (placed below the
    text, or on a page of its own when the text leaves too little room); then each model's output.

    Why figures: a test renders them and checks that no text box overlaps the image (the old page drew the film over
    its own text)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, no GUI

    cards = list(cards or [])
    cmap = _card_map(cards)
    overlay = next((o for o in (_overlay(r, image) for r in results
                                if type(r).__name__ == "SegmentationResult") if o is not None), None)
    if overlay is None:
        overlay = next((o for o in (_overlay(r, image) for r in results) if o is not None), None)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    first = [f"{k.replace('_', ' ')}: {v}" for k, v in safe_header(header).items()] + [""] + _findings_lines(results, cards)
    details = _model_lines(results, cmap)

    def page(lines: list[str], top: float, heading: bool) -> Any:
        fig = Figure(figsize=(8.27, 11.69))
        fig.text(0.5, 0.975, DISCLAIMER, ha="center", va="top", fontsize=13, color="white", weight="bold",
                 bbox={"facecolor": "#b00020", "edgecolor": "none", "pad": 6})
        if heading:
            fig.text(0.06, 0.935, title, ha="left", va="top", fontsize=15, weight="bold")
            fig.text(0.06, 0.912, f"generated {when} by spine-models · findings are model outputs for a qualified reader, "
                     "not a diagnosis", ha="left", va="top", fontsize=8, color="#555555")
        if lines:
            fig.text(0.06, top, "\n".join(lines), ha="left", va="top", fontsize=9, family="DejaVu Sans", linespacing=1.25)
        return fig

    pages = [page(first, 0.89, True)]
    room_top = 0.89 - PDF_LINE * len(first) - 0.02
    if overlay is not None:
        fig = pages[0] if room_top - 0.04 >= 0.25 else page([], 0.9, False)
        top = room_top if fig is pages[0] else 0.93
        ax = fig.add_axes((0.1, 0.04, 0.8, top - 0.04))
        ax.imshow(overlay)
        ax.axis("off")
        if fig is not pages[0]:
            pages.append(fig)
    for i in range(0, len(details), PDF_LINES_PER_PAGE):
        chunk = details[i:i + PDF_LINES_PER_PAGE]
        pages.append(page((["EACH MODEL'S OUTPUT"] if i == 0 else []) + chunk, 0.93, False))
    return pages


def clinician_pdf(path: str | Path, results: Sequence[Any], *, image: np.ndarray | None = None,
                  header: dict[str, Any] | None = None, cards: Iterable[Any] | None = None) -> Path:
    """An A4 PDF (matplotlib's PdfPages, no extra dependency): findings and the film first, then each model."""
    from matplotlib.backends.backend_pdf import PdfPages

    p = Path(path)
    with PdfPages(p) as pdf:
        for fig in pdf_figures(results, image=image, header=header, cards=cards):
            pdf.savefig(fig)
    return p

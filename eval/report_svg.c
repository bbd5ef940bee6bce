/* report_svg.c - a dependency-free SVG chart of the before/after numbers (one bar panel
 * per metric over the stages) and of the training loss curve. Written atomically. */
#include "include/ftq.h"
#include "include/ftq_report.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *colors[] = {"#7f8c8d", "#2e86c1", "#8e44ad", "#27ae60", "#e67e22", "#c0392b"};

typedef struct {
    const char *title;
    const char *unit;
    int lower_is_better;
    double scale; /* value multiplier for display */
} panel_spec;

static double stage_value(const ftq_stage_metrics *s, int k)
{
    switch (k) {
    case 0: return s->ppl;
    case 1: return s->accuracy;
    case 2: return s->file_bytes;
    default: return s->tokens_per_second;
    }
}

static void fmt_value(char *buf, size_t cap, double v)
{
    if (!isfinite(v))
        snprintf(buf, cap, "n/a");
    else if (fabs(v) >= 1000)
        snprintf(buf, cap, "%.0f", v);
    else if (fabs(v) >= 10)
        snprintf(buf, cap, "%.1f", v);
    else
        snprintf(buf, cap, "%.3g", v);
}

static void escape(FILE *fp, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", fp);
        else if (*s == '>')
            fputs("&gt;", fp);
        else if (*s == '&')
            fputs("&amp;", fp);
        else
            fputc(*s, fp);
    }
}

static void bar_panel(FILE *fp, double x0, double y0, double w, double h, const panel_spec *ps, int k,
                      const ftq_stage_metrics *st, int n)
{
    double vmax = 0;
    for (int i = 0; i < n; i++) {
        double v = stage_value(&st[i], k) * ps->scale;
        if (isfinite(v) && v > vmax)
            vmax = v;
    }
    if (vmax <= 0)
        vmax = 1;
    fprintf(fp, "<g transform=\"translate(%.1f,%.1f)\">\n", x0, y0);
    fprintf(fp, "<text x=\"%.1f\" y=\"14\" class=\"ptitle\">%s%s</text>\n", w / 2, ps->title,
            ps->lower_is_better ? " (lower is better)" : "");
    fprintf(fp, "<text x=\"%.1f\" y=\"30\" class=\"unit\">%s</text>\n", w / 2, ps->unit);
    double top = 44, bottom = h - 40, ph = bottom - top;
    fprintf(fp, "<line x1=\"4\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", bottom, w - 4, bottom);
    double slot = (w - 8) / (n > 0 ? n : 1), bw = slot * 0.66;
    for (int i = 0; i < n; i++) {
        double v = stage_value(&st[i], k) * ps->scale, x = 4 + i * slot + (slot - bw) / 2;
        char label[32];
        fmt_value(label, sizeof label, v);
        if (isfinite(v)) {
            double bh = ph * v / (vmax * 1.12);
            fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x,
                    bottom - bh, bw, bh, colors[i % 6]);
            fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"val\">%s</text>\n", x + bw / 2, bottom - bh - 4, label);
        } else {
            fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"val\">n/a</text>\n", x + bw / 2, bottom - 4);
        }
        /* alternate rows so long stage names never collide */
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\">", x + bw / 2, bottom + 14 + (i % 2) * 12);
        escape(fp, st[i].name);
        fprintf(fp, "</text>\n");
    }
    fprintf(fp, "</g>\n");
}

static void loss_panel(FILE *fp, double x0, double y0, double w, double h, const double *loss, int n)
{
    fprintf(fp, "<g transform=\"translate(%.1f,%.1f)\">\n", x0, y0);
    fprintf(fp, "<text x=\"%.1f\" y=\"14\" class=\"ptitle\">training loss per optimizer step</text>\n", w / 2);
    double left = 56, right = w - 16, top = 28, bottom = h - 30;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(loss[i])) {
            lo = loss[i] < lo ? loss[i] : lo;
            hi = loss[i] > hi ? loss[i] : hi;
        }
    if (n < 2 || !isfinite(lo)) {
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"val\">no training steps</text>\n</g>\n", w / 2, h / 2);
        return;
    }
    if (hi - lo < 1e-9)
        hi = lo + 1;
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", left, bottom, right, bottom);
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", left, top, left, bottom);
    for (int t = 0; t <= 4; t++) {
        double v = lo + (hi - lo) * t / 4, y = bottom - (bottom - top) * t / 4;
        fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.3g</text>\n", left - 6, y + 4, v);
    }
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\">step (1 .. %d)</text>\n", (left + right) / 2, h - 6, n);
    /* raw loss, thin, and a moving average over ~5 % of the run, thick */
    int win = n / 20 > 1 ? n / 20 : 1;
    for (int pass = 0; pass < 2; pass++) {
        fprintf(fp, "<polyline class=\"%s\" points=\"", pass ? "avg" : "raw");
        double acc = 0;
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            double v = loss[i];
            if (pass) {
                acc += isfinite(loss[i]) ? loss[i] : 0;
                cnt++;
                if (i >= win) {
                    acc -= isfinite(loss[i - win]) ? loss[i - win] : 0;
                    cnt--;
                }
                v = acc / cnt;
            }
            if (!isfinite(v))
                continue;
            double x = left + (right - left) * i / (n - 1), y = bottom - (bottom - top) * (v - lo) / (hi - lo);
            fprintf(fp, "%.1f,%.1f ", x, y);
        }
        fprintf(fp, "\"/>\n");
    }
    fprintf(fp, "</g>\n");
}

int ftq_report_svg(const char *path, const char *title, const ftq_stage_metrics *st, int n, const double *loss,
                   int n_loss)
{
    static const panel_spec panels[4] = {
        {"Perplexity", "eval text", 1, 1.0},
        {"Dev accuracy", "%", 0, 100.0},
        {"File size", "MB", 1, 1e-6},
        {"Throughput", "tokens/s (prompt)", 0, 1.0},
    };
    ftq_atomic_file af;
    int rc = ftq_atomic_open(&af, path);
    if (rc != FTQ_OK)
        return rc;
    FILE *fp = af.fp;
    const double W = 1000, H = 620, pw = W / 4;
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                "font-family=\"DejaVu Sans, Arial, sans-serif\">\n", W, H, W, H);
    fprintf(fp, "<style>.ptitle{font-size:14px;font-weight:bold;text-anchor:middle}"
                ".unit{font-size:11px;fill:#555;text-anchor:middle}.val{font-size:11px;text-anchor:middle}"
                ".lab{font-size:11px;text-anchor:middle;fill:#333}.tick{font-size:10px;text-anchor:end;fill:#555}"
                ".axis{stroke:#999;stroke-width:1}.raw{fill:none;stroke:#aed6f1;stroke-width:1}"
                ".avg{fill:none;stroke:#1b4f72;stroke-width:2}</style>\n");
    fprintf(fp, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(fp, "<text x=\"%.0f\" y=\"24\" style=\"font-size:17px;font-weight:bold;text-anchor:middle\">", W / 2);
    escape(fp, title);
    fprintf(fp, "</text>\n");
    for (int k = 0; k < 4; k++)
        bar_panel(fp, k * pw + 8, 40, pw - 16, 300, &panels[k], k, st, n);
    loss_panel(fp, 8, 360, W - 16, 250, loss, loss ? n_loss : 0);
    fprintf(fp, "</svg>\n");
    if (ferror(fp)) {
        ftq_atomic_abort(&af);
        return ftq_set_error(FTQ_EIO, "cannot write '%s'", path);
    }
    return ftq_atomic_commit(&af);
}

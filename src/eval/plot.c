/* `hallu plot`: a self-contained SVG of a run's metrics.jsonl with three stacked
 * panels sharing the epoch axis: loss, learning rate, kNN top-1.
 *
 * x positions: the trainer logs a global "step"; when at least one epoch is
 * complete, steps per epoch = last step of that epoch / (epoch + 1) and
 * x = step / steps_per_epoch for every line (kNN lines are logged after their
 * epoch's last step, so they land on its end). Files without steps fall back to
 * spreading an epoch's step lines evenly over (epoch, epoch + 1] and putting kNN
 * results at epoch + 1 (the untrained "knn_floor_top1" at its epoch, i.e. 0). */
#include "eval_internal.h"
#include "hallu/io.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    double *x, *y;
    int64_t n, cap;
} series;

enum { S_LOSS, S_LR, S_KNN, S_FLOOR, NUM_SERIES };
enum { K_EPOCH, K_STEP, K_LOSS, K_LR, K_KNN, K_FLOOR, NUM_KEYS };
static const char *const metric_keys[NUM_KEYS] = { "epoch", "step", "loss", "lr", "knn_top1", "knn_floor_top1" };

typedef struct metric_line {
    double v[NUM_KEYS];
    int has[NUM_KEYS];
} metric_line;

typedef struct plot_data {
    metric_line *lines;
    int64_t n, cap;
    series s[NUM_SERIES];
    double x_lo, x_hi;
} plot_data;

static void plot_data_free(plot_data *d)
{
    free(d->lines);
    for (int i = 0; i < NUM_SERIES; i++) {
        free(d->s[i].x);
        free(d->s[i].y);
    }
}

static int series_push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (nx) s->x = nx;
        double *ny = nx ? realloc(s->y, (size_t)cap * sizeof *ny) : NULL;
        if (!ny)
            return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return 0;
}

/* ---- reading ---- */

static hallu_status push_line(plot_data *d, const metric_line *m, hallu_error *err)
{
    if (d->n == d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 1024;
        metric_line *nl = realloc(d->lines, (size_t)cap * sizeof *nl);
        if (!nl)
            return hallu_error_set(err, HALLU_ERR_OOM, "plot: out of memory at %lld metric lines", (long long)d->n);
        d->lines = nl;
        d->cap = cap;
    }
    d->lines[d->n++] = *m;
    return HALLU_OK;
}

/* The metrics text [text, text + len) line by line; name stands for the file
 * in messages. A line is read up to its first NUL byte, as getline + a C
 * string reader would. */
static hallu_status parse_metrics(const char *text, size_t len, const char *name, plot_data *d, hallu_error *err)
{
    char *buf = NULL;
    size_t cap = 0;
    hallu_status s = HALLU_OK;
    const char *p = text, *end = text + len;
    for (int64_t lineno = 1; s == HALLU_OK && p < end; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int complete = nl != NULL;
        if (n + 1 > cap) {
            char *grown = realloc(buf, n + 1);
            if (!grown) {
                s = hallu_error_set(err, HALLU_ERR_OOM, "plot: out of memory at %s line %lld", name, (long long)lineno);
                break;
            }
            buf = grown;
            cap = n + 1;
        }
        memcpy(buf, p, n);
        buf[n] = '\0';
        p = nl ? nl + 1 : end;
        const char *q = buf;
        while (*q == ' ' || *q == '\t' || *q == '\r')
            q++;
        if (!*q)
            continue;
        metric_line m;
        if (eval_json_numbers(buf, metric_keys, NUM_KEYS, m.v, m.has) != 0) {
            /* A crash can leave a torn last line behind: skip it, reject others. */
            if (!complete)
                break;
            s = hallu_error_set(err, HALLU_ERR_FORMAT, "plot: %s line %lld is not a JSON object: %.60s",
                                name, (long long)lineno, buf);
        } else if (!m.has[K_EPOCH]) {
            s = hallu_error_set(err, HALLU_ERR_FORMAT, "plot: %s line %lld has no numeric \"epoch\"",
                                name, (long long)lineno);
        } else {
            s = push_line(d, &m, err);
        }
    }
    free(buf);
    return s;
}

/* The whole file into a new buffer. */
static hallu_status read_file(const char *path, char **text, size_t *len, hallu_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return hallu_error_set(err, HALLU_ERR_IO, "plot: cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    hallu_status s = HALLU_OK;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *grown = cap <= SIZE_MAX / 2 ? realloc(buf, 2 * cap) : NULL;
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    if (!buf)
        s = hallu_error_set(err, HALLU_ERR_OOM, "plot: out of memory reading %s", path);
    else if (ferror(f))
        s = hallu_error_set(err, HALLU_ERR_IO, "plot: read error on %s", path);
    fclose(f);
    if (s != HALLU_OK) {
        free(buf);
        return s;
    }
    *text = buf;
    *len = n;
    return HALLU_OK;
}

/* Steps per epoch from the first complete epoch (one followed by a later
 * epoch's line), or 0 when unknown; steps count from 0 at epoch 0. */
static double steps_per_epoch(const plot_data *d)
{
    for (int64_t i = 0; i < d->n; i++)
        if (!d->lines[i].has[K_STEP])
            return 0;
    double e0 = d->n ? d->lines[0].v[K_EPOCH] : 0, last = 0;
    for (int64_t i = 0; i < d->n; i++) {
        const metric_line *m = &d->lines[i];
        if (m->v[K_EPOCH] > e0)
            return last > 0 ? last / (e0 + 1) : 0;
        last = fmax(last, m->v[K_STEP]);
    }
    return 0;
}

/* Lines without steps: each run of lines with one epoch e spreads its loss
 * lines over (e, e + 1]. The cursor walks the runs once as i goes 0, 1, ...
 * (a scan of the whole run for every line was quadratic in its length). */
typedef struct run_cursor {
    int64_t last;            /* last line of the current run; -1 before the first */
    int64_t rank, count;     /* loss lines so far in the run, and in all of it */
} run_cursor;

static double fallback_x(const plot_data *d, int64_t i, run_cursor *c)
{
    const metric_line *m = &d->lines[i];
    double e = m->v[K_EPOCH];
    if (i > c->last) {
        c->rank = c->count = 0;
        for (c->last = i; c->last < d->n && d->lines[c->last].v[K_EPOCH] == e; c->last++)
            c->count += d->lines[c->last].has[K_LOSS];
        c->last--;
    }
    if (!m->has[K_LOSS])
        return m->has[K_KNN] ? e + 1 : e;
    return e + (double)++c->rank / (double)c->count;
}

/* Larger magnitudes (only a corrupt file has them) are left out of the plot:
 * differences of plottable values stay finite. */
static int plottable(double v)
{
    return fabs(v) <= 1e300;
}

/* Widens [lo, hi] (lo <= hi) around its middle to at least 1e-9 of its
 * magnitude (and 1e-200), so that the ticks, nice_step(hi - lo) apart, advance
 * in double precision and no pixel position divides by a zero span. */
static void usable_range(double *lo, double *hi)
{
    double span = 1e-9 * fmax(fabs(*lo), fabs(*hi));
    span = fmax(span, 1e-200);
    if (*hi - *lo < span) {
        double mid = *lo / 2 + *hi / 2;
        *lo = mid - span / 2;
        *hi = mid + span / 2;
    }
}

static hallu_status build_series(plot_data *d, hallu_error *err)
{
    double spe = steps_per_epoch(d);
    run_cursor cursor = { .last = -1 };
    d->x_lo = INFINITY;
    d->x_hi = -INFINITY;
    for (int64_t i = 0; i < d->n; i++) {
        const metric_line *m = &d->lines[i];
        double x = spe > 0 ? m->v[K_STEP] / spe : fallback_x(d, i, &cursor);
        static const int key_of[NUM_SERIES] = { K_LOSS, K_LR, K_KNN, K_FLOOR };
        for (int k = 0; k < NUM_SERIES; k++) {
            if (!m->has[key_of[k]] || !plottable(x) || !plottable(m->v[key_of[k]]))
                continue;
            if (series_push(&d->s[k], x, m->v[key_of[k]]) != 0)
                return hallu_error_set(err, HALLU_ERR_OOM, "plot: out of memory at line %lld", (long long)i + 1);
            d->x_lo = fmin(d->x_lo, x);
            d->x_hi = fmax(d->x_hi, x);
        }
    }
    if (d->s[S_LOSS].n + d->s[S_LR].n + d->s[S_KNN].n + d->s[S_FLOOR].n == 0)
        return hallu_error_set(err, HALLU_ERR_FORMAT, "plot: no \"loss\", \"lr\" or \"knn_top1\" values found");
    if (d->x_hi <= d->x_lo)
        d->x_hi = d->x_lo + 1;
    usable_range(&d->x_lo, &d->x_hi);
    return HALLU_OK;
}

/* ---- writing ---- */

/* The SVG text, grown in memory; the first failure sticks. */
typedef struct svg_out {
    char *buf;
    size_t len, cap;
    hallu_status status;
    hallu_error *err;
} svg_out;

__attribute__((format(printf, 2, 3)))
static void out(svg_out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t k = n < 0 ? 0 : n < (int)sizeof line ? (size_t)n : sizeof line - 1;
    if (o->status != HALLU_OK)
        return;
    if (o->len + k + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1 << 14;
        while (cap < o->len + k + 1)
            cap *= 2;
        char *grown = realloc(o->buf, cap);
        if (!grown) {
            o->status = hallu_error_set(o->err, HALLU_ERR_OOM, "plot: out of memory writing the SVG");
            return;
        }
        o->buf = grown;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, line, k);
    o->len += k;
    o->buf[o->len] = '\0';
}

enum { WIDTH = 900, PANEL_H = 260, MARGIN_L = 84, MARGIN_R = 28, MARGIN_T = 34, MARGIN_B = 44 };

typedef struct panel {
    int top;                  /* pixel row of the panel's top */
    double x_lo, x_hi, y_lo, y_hi;
} panel;

static double px(const panel *p, double x)
{
    return MARGIN_L + (x - p->x_lo) / (p->x_hi - p->x_lo) * (WIDTH - MARGIN_L - MARGIN_R);
}

static double py(const panel *p, double y)
{
    double h = PANEL_H - MARGIN_T - MARGIN_B;
    return p->top + MARGIN_T + h - (y - p->y_lo) / (p->y_hi - p->y_lo) * h;
}

/* 1, 2 or 5 times a power of ten, about range / 5. */
static double nice_step(double range)
{
    double raw = range / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void y_range(const series *a, const series *b, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    const series *ss[2] = { a, b };
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; ss[k] && i < ss[k]->n; i++) {
            *lo = fmin(*lo, ss[k]->y[i]);
            *hi = fmax(*hi, ss[k]->y[i]);
        }
    if (!isfinite(*lo)) {
        *lo = 0;
        *hi = 1;
    }
    double pad = *hi > *lo ? 0.05 * (*hi - *lo) : fmax(fabs(*hi) * 0.1, 1e-3);
    *lo -= pad;
    *hi += pad;
    usable_range(lo, hi);
}

static void axes(svg_out *o, const panel *p, const char *title, const char *xlabel)
{
    int x0 = MARGIN_L, x1 = WIDTH - MARGIN_R, y0 = p->top + MARGIN_T, y1 = p->top + PANEL_H - MARGIN_B;
    out(o, "<g class=\"panel\">\n<text x=\"%d\" y=\"%d\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
        x0, p->top + 22, title);
    double xs = nice_step(p->x_hi - p->x_lo), ys = nice_step(p->y_hi - p->y_lo);
    /* Ticks by index (t0 + k) * xs: no accumulated rounding, and at most 100
     * even if a range were too narrow for its magnitude. */
    double t0 = ceil(p->x_lo / xs);
    for (int k = 0; k < 100 && (t0 + k) * xs <= p->x_hi + 1e-9 * xs; k++) {
        double t = (t0 + k) * xs, x = px(p, t);
        out(o, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
               "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#000\"/>"
               "<text x=\"%.2f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
            x, y0, x, y1, x, y1, x, y1 + 5, x, y1 + 18, fabs(t) < 1e-12 * xs ? 0.0 : t);
    }
    t0 = ceil(p->y_lo / ys);
    for (int k = 0; k < 100 && (t0 + k) * ys <= p->y_hi + 1e-9 * ys; k++) {
        double t = (t0 + k) * ys, y = py(p, t);
        out(o, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#e4e4e4\"/>"
               "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#000\"/>"
               "<text x=\"%d\" y=\"%.2f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
            x0, y, x1, y, x0 - 5, y, x0, y, x0 - 8, y + 4, fabs(t) < 1e-12 * ys ? 0.0 : t);
    }
    out(o, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#000\"/>\n"
           "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n",
        x0, y0, x1 - x0, y1 - y0, (x0 + x1) / 2, y1 + 36, xlabel);
}

/* At most ~2000 vertices: consecutive points are averaged in groups. */
static void polyline(svg_out *o, const panel *p, const series *s, const char *colour, const char *name)
{
    if (s->n == 0)
        return;
    int64_t group = (s->n + 1999) / 2000;
    out(o, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", name, colour);
    for (int64_t i = 0; i < s->n; i += group) {
        double sx = 0, sy = 0;
        int64_t m = 0;
        for (; m < group && i + m < s->n; m++) {
            sx += s->x[i + m];
            sy += s->y[i + m];
        }
        out(o, "%.2f,%.2f ", px(p, sx / m), py(p, sy / m));
    }
    out(o, "\"/>\n");
    if (s->n <= 200)
        for (int64_t i = 0; i < s->n && name[0] == 'k'; i++)
            out(o, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", px(p, s->x[i]), py(p, s->y[i]), colour);
}

static void no_data(svg_out *o, const panel *p, const series *s, const char *what)
{
    if (s->n == 0)
        out(o, "<text x=\"%d\" y=\"%d\" font-size=\"13\" fill=\"#888\" text-anchor=\"middle\">no %s in the metrics</text>\n",
            WIDTH / 2, p->top + PANEL_H / 2, what);
}

static void write_svg(svg_out *o, const plot_data *d, const char *xlabel)
{
    out(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
           "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
        WIDTH, 3 * PANEL_H, WIDTH, 3 * PANEL_H);
    panel p = { .top = 0, .x_lo = d->x_lo, .x_hi = d->x_hi };
    y_range(&d->s[S_LOSS], NULL, &p.y_lo, &p.y_hi);
    axes(o, &p, "training loss", xlabel);
    polyline(o, &p, &d->s[S_LOSS], "#1f77b4", "loss");
    no_data(o, &p, &d->s[S_LOSS], "loss");
    out(o, "</g>\n");
    p.top = PANEL_H;
    y_range(&d->s[S_LR], NULL, &p.y_lo, &p.y_hi);
    axes(o, &p, "learning rate", xlabel);
    polyline(o, &p, &d->s[S_LR], "#2ca02c", "lr");
    no_data(o, &p, &d->s[S_LR], "learning rate");
    out(o, "</g>\n");
    p.top = 2 * PANEL_H;
    y_range(&d->s[S_KNN], &d->s[S_FLOOR], &p.y_lo, &p.y_hi);
    axes(o, &p, "kNN top-1 (%)", xlabel);
    polyline(o, &p, &d->s[S_KNN], "#d62728", "knn");
    if (d->s[S_FLOOR].n > 0) {
        double y = py(&p, d->s[S_FLOOR].y[d->s[S_FLOOR].n - 1]);
        out(o, "<line class=\"knn-floor\" x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#888\" "
               "stroke-dasharray=\"5,4\"/><text x=\"%d\" y=\"%.2f\" font-size=\"11\" fill=\"#888\" "
               "text-anchor=\"end\">untrained network</text>\n",
            MARGIN_L, y, WIDTH - MARGIN_R, y, WIDTH - MARGIN_R - 4, y - 4);
    }
    if (d->s[S_KNN].n == 0 && d->s[S_FLOOR].n == 0)
        no_data(o, &p, &d->s[S_KNN], "kNN results");
    out(o, "</g>\n</svg>\n");
}

hallu_status eval_plot_svg(const char *text, size_t len, const char *name, char **svg, size_t *svg_len,
                           hallu_error *err)
{
    plot_data d;
    memset(&d, 0, sizeof d);
    *svg = NULL;
    *svg_len = 0;
    hallu_status s = parse_metrics(text, len, name, &d, err);
    if (s == HALLU_OK)
        s = build_series(&d, err);
    if (s == HALLU_OK) {
        svg_out o = { .status = HALLU_OK, .err = err };
        write_svg(&o, &d, steps_per_epoch(&d) > 0 ? "epoch (from global step)" : "epoch");
        s = o.status;
        if (s == HALLU_OK) {
            *svg = o.buf;
            *svg_len = o.len;
        } else {
            free(o.buf);
        }
    }
    plot_data_free(&d);
    return s;
}

hallu_status hallu_plot_training(const char *metrics_path, const char *svg_path, hallu_error *err)
{
    char *text = NULL, *svg = NULL;
    size_t len = 0, svg_len = 0;
    hallu_status s = read_file(metrics_path, &text, &len, err);
    if (s == HALLU_OK)
        s = eval_plot_svg(text, len, metrics_path, &svg, &svg_len, err);
    if (s == HALLU_OK)
        s = hallu_atomic_write(svg_path, svg, svg_len, err);
    free(svg);
    free(text);
    return s;
}

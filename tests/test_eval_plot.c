/* Training plot: metrics JSONL in, SVG out; and the JSON line reader under it. */
#include "check.h"
#include "eval/eval_internal.h"
#include "hallu/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_json_numbers(void)
{
    const char *keys[] = { "epoch", "loss", "knn_top1" };
    double v[3];
    int has[3];
    CHECK(eval_json_numbers("{\"epoch\": 3, \"loss\": -1.5e-1, \"name\": \"loss\\\"x\", \"a\": [1, {\"loss\": 9}],"
                            " \"b\": null, \"c\": true}", keys, 3, v, has) == 0);
    CHECK(has[0] && has[1] && !has[2]);
    CHECK_NEAR(v[0], 3, 0);
    CHECK_NEAR(v[1], -0.15, 1e-15);
    CHECK(eval_json_numbers("  {}  ", keys, 3, v, has) == 0 && !has[0]);
    CHECK(eval_json_numbers("{\"knn_top1\": \"12\"}", keys, 3, v, has) == 0 && !has[2]);   /* a string, not a number */
    CHECK(eval_json_numbers("{\"epoch\": 1", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("{\"epoch\" 1}", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("{\"epoch\": 1} x", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("[1, 2]", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("{\"a\": [1, 2}", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("{\"a\": \"unterminated}", keys, 3, v, has) == -1);
    CHECK(eval_json_numbers("{\"a\": 1,}", keys, 3, v, has) == -1);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The trainer's format: 4 steps per epoch logged every 2 steps, kNN after each epoch. */
static void write_run(const char *path, int epochs)
{
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"epoch\": 0, \"step\": 0, \"knn_floor_top1\": 21.5, \"knn_floor_top5\": 60}\n");
    for (int e = 0; e < epochs; e++) {
        for (int s = 2; s <= 4; s += 2)
            fprintf(f, "{\"epoch\": %d, \"step\": %d, \"loss\": %.3f, \"lr\": %.4f, \"images_per_s\": 100, "
                       "\"data_wait\": 0.01}\n", e, e * 4 + s, 6.0 - 0.3 * (e * 4 + s), 0.06 * (1 - e / 10.0));
        fprintf(f, "{\"epoch\": %d, \"step\": %d, \"knn_top1\": %.2f, \"knn_top5\": 80}\n", e, e * 4 + 4, 30.0 + e);
    }
    fclose(f);
}

static void test_plot(const char *dir)
{
    char metrics[512], svg[512];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(svg, sizeof svg, "%s/training.svg", dir);
    hallu_error err = { 0 };
    write_run(metrics, 5);
    CHECK_OK(hallu_plot_training(metrics, svg, &err), &err);
    char *text = read_all(svg);
    CHECK(text != NULL);
    if (text) {
        CHECK(strncmp(text, "<?xml", 5) == 0);
        CHECK(count(text, "<polyline class=\"loss\"") == 1);
        CHECK(count(text, "<polyline class=\"lr\"") == 1);
        CHECK(count(text, "<polyline class=\"knn\"") == 1);
        CHECK(count(text, "class=\"knn-floor\"") == 1);
        CHECK(count(text, "<circle") == 5);                 /* one marker per kNN result */
        CHECK(count(text, "<g class=\"panel\">") == 3 && count(text, "</g>") == 3);
        CHECK(strstr(text, "</svg>\n") != NULL);
        CHECK(strstr(text, "epoch (from global step)") != NULL);
        /* 10 loss points, each "x,y " */
        const char *pl = strstr(text, "<polyline class=\"loss\"");
        const char *pts = pl ? strstr(pl, "points=\"") : NULL;
        const char *end = pts ? strchr(pts + 8, '"') : NULL;
        int commas = 0;
        for (const char *p = pts; p && p < end; p++)
            commas += *p == ',';
        CHECK(commas == 10);
        free(text);
    }
    /* A torn last line (crash mid-append) is skipped; a bad line elsewhere is an error. */
    FILE *f = fopen(metrics, "a");
    fputs("{\"epoch\": 5, \"step\": 2", f);
    fclose(f);
    CHECK_OK(hallu_plot_training(metrics, svg, &err), &err);
    write_text(metrics, "{\"epoch\": 0, \"loss\": 1}\nnot json\n{\"epoch\": 1, \"loss\": 1}\n");
    CHECK(hallu_plot_training(metrics, svg, &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "line 2") != NULL);
    write_text(metrics, "{\"loss\": 1}\n");
    CHECK(hallu_plot_training(metrics, svg, &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "epoch") != NULL);
    write_text(metrics, "\n{\"epoch\": 0, \"images_per_s\": 5}\n");
    CHECK(hallu_plot_training(metrics, svg, &err) == HALLU_ERR_FORMAT);
    /* Without steps: the fallback layout still plots, and the old SVG was replaced only on success. */
    write_text(metrics, "{\"epoch\": 0, \"loss\": 2, \"lr\": 0.1}\n{\"epoch\": 0, \"loss\": 1.5, \"lr\": 0.1}\n"
                        "{\"epoch\": 0, \"knn_top1\": 40}\n{\"epoch\": 1, \"loss\": 1, \"lr\": 0.05}\n");
    CHECK_OK(hallu_plot_training(metrics, svg, &err), &err);
    text = read_all(svg);
    CHECK(text && count(text, "<polyline") == 3 && count(text, "knn-floor") == 0);
    CHECK(text && strstr(text, "epoch (from global step)") == NULL);
    free(text);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.jsonl", dir);
    CHECK(hallu_plot_training(missing, svg, &err) == HALLU_ERR_IO);
    CHECK(strstr(err.msg, "nope.jsonl") != NULL);
    unlink(metrics);
    unlink(svg);
}

/* eval_plot_svg on text[0..len): HALLU_OK and an SVG with only finite numbers. */
static void expect_plot(const char *text, size_t len)
{
    char *svg = NULL;
    size_t n = 0;
    hallu_error err = { 0 };
    CHECK_OK(eval_plot_svg(text, len, "m.jsonl", &svg, &n, &err), &err);
    CHECK(svg && strlen(svg) == n && strstr(svg, "</svg>\n") == svg + n - 7);
    CHECK_MSG(svg && !strstr(svg, "nan") && !strstr(svg, "inf"), "non-finite coordinates for %.*s", (int)len, text);
    free(svg);
}

#define EXPECT_PLOT(lit) expect_plot(lit, sizeof(lit) - 1)

/* Inputs found by (or written after) the fuzz target tests/fuzz/fuzz_metrics.c. */
static void test_plot_extremes(void)
{
    /* One point at a huge epoch: x_lo + 1 == x_lo left a zero x span (NaN pixels). */
    EXPECT_PLOT("{\"epoch\": 66666666666666666666666666666666660, \"loss\": 2, \"lr\": 0.1}\r\n"
                "{\"epoch\": 0, \"loss#: 1.5, \"lr\": 0. \"a{\"eppoo");
    /* Values 16 apart at 1e17: the tick loop's t += 5 did not advance t (a hang). */
    EXPECT_PLOT("{\"epoch\": 1e17, \"loss\": 1e17}\n{\"epoch\": 1e17, \"loss\": 100000000000000016}\n");
    /* Spans that overflow a double: magnitudes above 1e300 are left out. */
    EXPECT_PLOT("{\"epoch\": 0, \"step\": 1, \"loss\": 1e308, \"lr\": -1.7e308}\n"
                "{\"epoch\": -1e308, \"loss\": -1e308, \"lr\": 0.1}\n{\"epoch\": 1e-300, \"knn_top1\": 5e-324}\n");
    /* steps per epoch 1e-300: step / spe overflowed to inf. */
    EXPECT_PLOT("{\"epoch\": 0, \"step\": 1e-300, \"loss\": 1}\n{\"epoch\": 1, \"step\": 1e300, \"loss\": 2}\n"
                "{\"epoch\": 1, \"step\": 3, \"lr\": 2}\n");
    /* Nothing plottable is an error, as no values at all. */
    char *svg = NULL;
    size_t n = 0;
    hallu_error err = { 0 };
    const char *huge = "{\"epoch\": 0, \"loss\": 1e301}\n";
    CHECK(eval_plot_svg(huge, strlen(huge), "m.jsonl", &svg, &n, &err) == HALLU_ERR_FORMAT && !svg);
    /* The text need not end in a NUL: nothing past len is read, and a last
     * line without its newline that does not parse is a torn line. */
    const char text[] = "{\"epoch\": 0, \"loss\": 1}\n{\"epoch\": 1, \"loss\": 2}x";
    expect_plot(text, sizeof text - 2);
    expect_plot(text, sizeof text - 4);
    CHECK(eval_plot_svg(text, sizeof text - 1, "m.jsonl", &svg, &n, &err) == HALLU_OK);
    free(svg);
    /* 200,000 step lines of one epoch without "step": the layout scanned the
     * whole epoch for every line (4e10 comparisons, minutes); now one pass. */
    enum { LINES = 200000 };
    static const char line[] = "{\"epoch\": 0, \"loss\": 1.5}\n";
    char *big = malloc(LINES * (sizeof line - 1));
    CHECK(big != NULL);
    if (!big)
        return;
    for (int i = 0; i < LINES; i++)
        memcpy(big + (size_t)i * (sizeof line - 1), line, sizeof line - 1);
    expect_plot(big, LINES * (sizeof line - 1));
    free(big);
}

int main(void)
{
    test_json_numbers();
    test_plot_extremes();
    char dir[] = "/tmp/hallu_test_plot_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return check_summary();
    }
    test_plot(dir);
    rmdir(dir);
    return check_summary();
}

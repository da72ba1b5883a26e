/* bench_svg.c: a self-contained SVG chart comparing the devices on
 * generation tok/s, time to first token and memory. */
#include <stdio.h>
#include <string.h>

#include "bench/bench_internal.h"

#define WIDTH 760
#define LABEL_W 190
#define BAR_MAX 400
#define ROW_H 26
#define PANEL_GAP 24

/* Length of the valid UTF-8 sequence at p, or 0. */
static int utf8_len(const unsigned char *p) {
    int n = p[0] >= 0xF0 && p[0] < 0xF5   ? 4
            : p[0] >= 0xE0                ? 3
            : p[0] >= 0xC2 && p[0] < 0xE0 ? 2
                                          : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Text content or attribute value, escaped for XML; control characters
 * (not allowed in XML 1.0) are dropped, invalid UTF-8 becomes '?'. */
static void xml_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if (*p >= 0x80) {
                int n = utf8_len(p);
                if (n == 0)
                    fputc('?', f);
                else
                    fwrite(p, 1, (size_t)n, f), p += n - 1;
            } else if (*p >= 0x20 || *p == '\t') {
                fputc(*p, f);
            }
        }
    }
}

typedef struct panel {
    const char *title;
    const char *unit;
    double (*value)(const bench_result *r);
    const char *color;
} panel;

static double v_gen(const bench_result *r) {
    return r->gen_tps;
}
static double v_ttft(const bench_result *r) {
    return r->ttft_ms;
}
static double v_mem(const bench_result *r) {
    return bench_total_bytes(r) / (1024.0 * 1024.0);
}

static const panel PANELS[] = {
    {"Generation speed (higher is better)", "tok/s", v_gen, "#2f7ed8"},
    {"Time to first token (lower is better)", "ms", v_ttft, "#e4832b"},
    {"Memory: peak host + device (lower is better)", "MiB", v_mem, "#4a9c5d"},
};

static int panel_height(size_t n) {
    return 28 + (int)n * ROW_H;
}

static void text(FILE *f, int x, int y, const char *extra, const char *s) {
    fprintf(f, "<text x=\"%d\" y=\"%d\"%s>", x, y, extra);
    xml_text(f, s);
    fputs("</text>\n", f);
}

static void draw_bar(FILE *f, const panel *p, const bench_result *r, double max, int y) {
    char label[200], val[64];
    snprintf(label, sizeof label, "%s (%s)", r->device, r->backend);
    text(f, LABEL_W - 8, y + 16, " text-anchor=\"end\"", label);
    double v = p->value(r);
    if (!bench_result_usable(r) || !(v > 0)) {
        text(f, LABEL_W + 4, y + 16, " fill=\"#888\"", r->error[0] ? "error: no figure" : "n/a");
        return;
    }
    int w = max > 0 ? (int)(BAR_MAX * v / max + 0.5) : 0;
    if (w < 1) w = 1;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", LABEL_W, y + 3,
            w, ROW_H - 6, p->color);
    snprintf(val, sizeof val, "%.1f %s%s", v, p->unit, r->budget_exhausted ? " (budget)" : "");
    text(f, LABEL_W + w + 6, y + 16, "", val);
}

static void draw_panel(FILE *f, const panel *p, const bench_result *r, size_t n, int y) {
    double max = 0;
    for (size_t i = 0; i < n; i++)
        if (bench_result_usable(&r[i]) && p->value(&r[i]) > max) max = p->value(&r[i]);
    text(f, 10, y + 18, " font-weight=\"bold\"", p->title);
    for (size_t i = 0; i < n; i++) draw_bar(f, p, &r[i], max, y + 28 + (int)i * ROW_H);
}

int bench_write_svg(const char *path, const bench_system *sys, const bench_result *r, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "edgelm bench: cannot write %s\n", path);
        return 1;
    }
    size_t n_panels = sizeof PANELS / sizeof *PANELS;
    int height = 60 + (int)n_panels * (panel_height(n) + PANEL_GAP);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n",
            WIDTH, height, WIDTH, height);
    fputs("<title>", f);
    xml_text(f, "edgelm bench");
    fputs("</title>\n", f);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", WIDTH, height);
    char head[1024];
    snprintf(head, sizeof head, "edgelm bench: %s, -p %u -n %u", n ? r[0].model : "",
             n ? r[0].n_prompt : 0, n ? r[0].n_gen : 0);
    text(f, 10, 22, " font-size=\"16\" font-weight=\"bold\"", head);
    snprintf(head, sizeof head, "%s, %s, edgelm %s (%s), %s", sys->cpu, sys->os, sys->version,
             sys->commit, sys->time);
    text(f, 10, 42, " fill=\"#555\"", head);
    for (size_t i = 0; i < n_panels; i++)
        draw_panel(f, &PANELS[i], r, n, 56 + (int)i * (panel_height(n) + PANEL_GAP));
    fputs("</svg>\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "edgelm bench: error writing %s\n", path);
        return 1;
    }
    return 0;
}

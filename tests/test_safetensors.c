/* safetensors: round trip, and every kind of broken file gives HALLU_ERR_FORMAT
 * with a message naming the file, never a crash. */
#include "hallu/io.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];

/* A file image: 8-byte length, the header text, then data_len bytes. */
static unsigned char *make_image(const char *header, size_t data_len, size_t *size)
{
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    unsigned char *b = calloc(1, *size + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)i;
    return b;
}

static hallu_status parse_case(const char *name, const char *header, size_t data_len, hallu_error *err)
{
    size_t size;
    unsigned char *img = make_image(header, data_len, &size);
    hallu_safetensors st;
    hallu_status s = hallu_safetensors_parse(&st, img, size, name, err);
    if (s == HALLU_OK)
        hallu_safetensors_close(&st);
    free(img);
    return s;
}

#define EXPECT_FORMAT(name, header, data_len) do { \
    hallu_error e_ = {0}; \
    hallu_status s_ = parse_case(name, header, data_len, &e_); \
    CHECK_MSG(s_ == HALLU_ERR_FORMAT, "case %s: status %d (%s)", name, (int)s_, e_.msg); \
    CHECK_MSG(strstr(e_.msg, name) != NULL, "case %s: message lacks the name: %s", name, e_.msg); \
} while (0)

static void test_valid_images(void)
{
    hallu_error err = {0};
    CHECK_OK(parse_case("empty", "{}", 0, &err), &err);
    CHECK_OK(parse_case("padded", "{ }    \n\t ", 0, &err), &err);
    CHECK_OK(parse_case("one", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &err), &err);
    CHECK_OK(parse_case("scalar-bool", "{\"__metadata__\":{},\"b\":{\"shape\":[],\"dtype\":\"BOOL\","
                        "\"data_offsets\":[0,1]}}", 1, &err), &err);
    /* Escapes decode to UTF-8: e-acute and an emoji via a surrogate pair. */
    size_t size;
    unsigned char *img = make_image("{\"a\\u00e9\\ud83d\\ude00\\n\\\"\":{\"dtype\":\"U8\",\"shape\":[3],"
                                    "\"data_offsets\":[0,3]}}", 3, &size);
    hallu_safetensors st;
    CHECK_OK(hallu_safetensors_parse(&st, img, size, "utf8", &err), &err);
    const hallu_st_tensor *t = hallu_safetensors_find(&st, "a\xc3\xa9\xf0\x9f\x98\x80\n\"");
    CHECK(t && t->numel == 3 && t->dtype == HALLU_DTYPE_U8 && ((const unsigned char *)t->data)[2] == 2);
    hallu_safetensors_close(&st);
    hallu_safetensors_close(&st);   /* twice is harmless */
    free(img);
}

static void test_bad_headers(void)
{
    const char *T = "\"dtype\":\"F32\",\"shape\":[2]";
    char h[512];
    EXPECT_FORMAT("bad-dtype", "{\"w\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    EXPECT_FORMAT("dtype-not-string", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    snprintf(h, sizeof h, "{\"w\":{%s,\"data_offsets\":[0,12]}}", T);
    EXPECT_FORMAT("out-of-bounds", h, 8);
    snprintf(h, sizeof h, "{\"w\":{%s,\"data_offsets\":[0,4]}}", T);
    EXPECT_FORMAT("size-mismatch", h, 4);
    snprintf(h, sizeof h, "{\"w\":{%s,\"data_offsets\":[8,0]}}", T);
    EXPECT_FORMAT("begin-after-end", h, 8);
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[4,12]}}", T, T);
    EXPECT_FORMAT("overlap", h, 12);
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[0,8]}}", T, T);
    EXPECT_FORMAT("same-range", h, 8);
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[12,20]}}", T, T);
    EXPECT_FORMAT("hole", h, 20);
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]}}", T);
    EXPECT_FORMAT("trailing-data", h, 9);
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"a\":{%s,\"data_offsets\":[8,16]}}", T, T);
    EXPECT_FORMAT("duplicate-name", h, 16);
    EXPECT_FORMAT("shape-overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                  "\"data_offsets\":[0,0]}}", 0);
    EXPECT_FORMAT("bytes-overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                  "\"data_offsets\":[0,0]}}", 0);
    EXPECT_FORMAT("dim-too-large", "{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                  "\"data_offsets\":[0,0]}}", 0);
    EXPECT_FORMAT("int-overflow", "{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],"
                  "\"data_offsets\":[0,0]}}", 0);
    EXPECT_FORMAT("nine-dims", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("three-offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1);
    EXPECT_FORMAT("one-offset", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]}}", 1);
    EXPECT_FORMAT("missing-offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1);
    EXPECT_FORMAT("unknown-key", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1);
    EXPECT_FORMAT("duplicate-key", "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
                  "\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("negative", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("float", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("leading-zero", "{\"w\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("trailing-comma", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,],\"data_offsets\":[0,1]}}", 1);
    EXPECT_FORMAT("trailing-comma-obj", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},}", 1);
    EXPECT_FORMAT("missing-brace", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1);
    EXPECT_FORMAT("trailing-garbage", "{}x", 0);
    EXPECT_FORMAT("two-objects", "{}{}", 0);
    EXPECT_FORMAT("not-object", "[]", 0);
    EXPECT_FORMAT("empty-header", "", 0);
    EXPECT_FORMAT("unterminated", "{\"w", 0);
    EXPECT_FORMAT("control-char", "{\"a\tb\":{}}", 0);
    EXPECT_FORMAT("bad-escape", "{\"a\\qb\":{}}", 0);
    EXPECT_FORMAT("lone-surrogate", "{\"a\\ud800\":{}}", 0);
    EXPECT_FORMAT("low-surrogate", "{\"a\\udc00\":{}}", 0);
    EXPECT_FORMAT("short-hex", "{\"a\\u00\":{}}", 0);
    EXPECT_FORMAT("escaped-nul", "{\"a\\u0000\":{}}", 0);
    EXPECT_FORMAT("meta-number", "{\"__metadata__\":{\"k\":1}}", 0);
    EXPECT_FORMAT("meta-dup-key", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0);
    EXPECT_FORMAT("meta-twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0);
    EXPECT_FORMAT("nested", "{\"w\":{\"dtype\":{\"x\":[[[[]]]]}}}", 0);
    EXPECT_FORMAT("tensor-not-object", "{\"w\":[0,1]}", 0);
}

static void test_bad_lengths(void)
{
    hallu_error err = {0};
    hallu_safetensors st;
    unsigned char small[5] = {1, 0, 0, 0, 0};
    CHECK(hallu_safetensors_parse(&st, small, sizeof small, "short-file", &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "short-file") != NULL);
    CHECK(hallu_safetensors_parse(&st, NULL, 0, "null-empty", &err) == HALLU_ERR_FORMAT);
    size_t size;
    unsigned char *img = make_image("{}", 0, &size);
    img[0] = 3;   /* header length 3 > the 2 bytes present */
    CHECK(hallu_safetensors_parse(&st, img, size, "long-header", &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "long-header") != NULL && strstr(err.msg, "header length 3") != NULL);
    memset(img, 0xff, 8);   /* 2^64 - 1 */
    CHECK(hallu_safetensors_parse(&st, img, size, "huge-header", &err) == HALLU_ERR_FORMAT);
    free(img);
    img = make_image("{}  ", 0, &size);
    img[8 + 2] = 0;   /* NUL is not padding: only whitespace may follow the object */
    CHECK(hallu_safetensors_parse(&st, img, size, "nul-padding", &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "nul-padding") != NULL);
    img[8 + 2] = ' ';
    CHECK_OK(hallu_safetensors_parse(&st, img, size, "space-padding", &err), &err);
    hallu_safetensors_close(&st);
    memset(img, 0xff, 8);
    CHECK(hallu_safetensors_parse(&st, img, size, "huge-header", &err) == HALLU_ERR_FORMAT);
    free(img);
}

/* Every prefix and every single-byte change of a valid image: no crash, and
 * either a clean parse or HALLU_ERR_FORMAT. */
static void test_mutations(const unsigned char *img, size_t size)
{
    int bad = 0, ok_trunc = 0;
    hallu_error err;
    hallu_safetensors st;
    for (size_t n = 0; n < size; n++) {
        hallu_status s = hallu_safetensors_parse(&st, img, n, "prefix", &err);
        if (s == HALLU_OK) {
            ok_trunc++;
            hallu_safetensors_close(&st);
        } else if (s != HALLU_ERR_FORMAT) {
            bad++;
        }
    }
    CHECK(bad == 0 && ok_trunc == 0);
    unsigned char *m = malloc(size);
    const unsigned char vals[] = {0, '"', '{', '}', '[', ']', ',', ':', '9', 0xff, ' ', '\\'};
    for (size_t i = 0; i < size; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(m, img, size);
            m[i] = vals[v];
            hallu_status s = hallu_safetensors_parse(&st, m, size, "mutant", &err);
            if (s == HALLU_OK)
                hallu_safetensors_close(&st);
            else if (s != HALLU_ERR_FORMAT || !strstr(err.msg, "mutant"))
                bad++;
        }
    }
    CHECK(bad == 0);
    free(m);
}

static void test_round_trip(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float w[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
    int64_t idx[4] = {0, -1, INT64_MAX, INT64_MIN};
    int32_t sc = -7;
    hallu_st_entry t[4] = {
        {.name = "layer.weight", .dtype = HALLU_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "step", .dtype = HALLU_DTYPE_I64, .ndim = 1, .shape = {4}, .data = idx},
        {.name = "scalar \"q\"", .dtype = HALLU_DTYPE_I32, .ndim = 0, .data = &sc},
        {.name = "empty", .dtype = HALLU_DTYPE_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    hallu_st_meta meta[2] = {{"format", "pt"}, {"note", "line\nbreak \"quoted\" \\ caf\xc3\xa9"}};
    hallu_error err = {0};
    CHECK_OK(hallu_safetensors_write(path, t, 4, meta, 2, &err), &err);

    hallu_safetensors st;
    CHECK_OK(hallu_safetensors_open(&st, path, &err), &err);
    CHECK(st.num_tensors == 4 && st.num_meta == 2);
    for (int i = 1; i < st.num_tensors; i++)
        CHECK(strcmp(st.tensors[i - 1].name, st.tensors[i].name) < 0);
    const hallu_st_tensor *a = hallu_safetensors_find(&st, "layer.weight");
    CHECK(a && a->dtype == HALLU_DTYPE_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3);
    CHECK(a && memcmp(a->data, w, sizeof w) == 0);
    const hallu_st_tensor *b = hallu_safetensors_find(&st, "step");
    CHECK(b && b->dtype == HALLU_DTYPE_I64 && b->numel == 4 && memcmp(b->data, idx, sizeof idx) == 0);
    CHECK(b && ((uintptr_t)b->data % 8) == 0);   /* header padded to 8 */
    const hallu_st_tensor *c = hallu_safetensors_find(&st, "scalar \"q\"");
    CHECK(c && c->ndim == 0 && c->numel == 1 && memcmp(c->data, &sc, 4) == 0);
    const hallu_st_tensor *e = hallu_safetensors_find(&st, "empty");
    CHECK(e && e->numel == 0 && e->begin == e->end);
    CHECK(hallu_safetensors_find(&st, "nope") == NULL);
    CHECK(strcmp(hallu_safetensors_meta(&st, "format"), "pt") == 0);
    CHECK(strcmp(hallu_safetensors_meta(&st, "note"), meta[1].value) == 0);
    CHECK(hallu_safetensors_meta(&st, "absent") == NULL);

    float back[6];
    CHECK_OK(hallu_safetensors_copy(&st, "layer.weight", HALLU_DTYPE_F32, back, 6, &err), &err);
    CHECK(memcmp(back, w, sizeof w) == 0);
    CHECK(hallu_safetensors_copy(&st, "layer.weight", HALLU_DTYPE_I32, back, 6, &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "layer.weight") && strstr(err.msg, "F32"));
    CHECK(hallu_safetensors_copy(&st, "layer.weight", HALLU_DTYPE_F32, back, 5, &err) == HALLU_ERR_FORMAT);
    CHECK(hallu_safetensors_copy(&st, "missing", HALLU_DTYPE_F32, back, 6, &err) == HALLU_ERR_FORMAT);
    CHECK(strstr(err.msg, "missing") != NULL);
    test_mutations(st.bytes, st.size);
    hallu_safetensors_close(&st);
}

static void test_file_errors(void)
{
    char path[600], trunc[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    snprintf(trunc, sizeof trunc, "%s/trunc.safetensors", dir);
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    hallu_error err = {0};
    CHECK(n > 16);
    CHECK_OK(hallu_atomic_write(trunc, buf, n - 1, &err), &err);
    hallu_safetensors st;
    CHECK(hallu_safetensors_open(&st, trunc, &err) == HALLU_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, trunc) != NULL, "%s", err.msg);
    CHECK_OK(hallu_atomic_write(trunc, buf, 0, &err), &err);
    CHECK(hallu_safetensors_open(&st, trunc, &err) == HALLU_ERR_FORMAT);
    CHECK(hallu_safetensors_open(&st, "/nonexistent/x.safetensors", &err) == HALLU_ERR_IO);
    CHECK(hallu_safetensors_open(&st, dir, &err) == HALLU_ERR_IO);
}

static void test_writer_errors(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    float x = 1;
    hallu_st_entry t[2] = {
        {.name = "a", .dtype = HALLU_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &x},
        {.name = "a", .dtype = HALLU_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &x},
    };
    hallu_error err = {0};
    CHECK(hallu_safetensors_write(path, t, 2, NULL, 0, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "duplicate") != NULL);
    t[1].name = "b";
    t[1].dtype = HALLU_DTYPE_F16;
    CHECK(hallu_safetensors_write(path, t, 2, NULL, 0, &err) == HALLU_ERR_INVALID_ARG);
    t[1].dtype = HALLU_DTYPE_F32;
    t[1].ndim = 9;
    CHECK(hallu_safetensors_write(path, t, 2, NULL, 0, &err) == HALLU_ERR_INVALID_ARG);
    t[1].ndim = 1;
    t[1].name = "__metadata__";
    CHECK(hallu_safetensors_write(path, t, 2, NULL, 0, &err) == HALLU_ERR_INVALID_ARG);
    CHECK(access(path, F_OK) != 0);
    CHECK_OK(hallu_safetensors_write(path, NULL, 0, NULL, 0, &err), &err);
    hallu_safetensors st;
    CHECK_OK(hallu_safetensors_open(&st, path, &err), &err);
    CHECK(st.num_tensors == 0 && st.num_meta == 0);
    hallu_safetensors_close(&st);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_safetensors_XXXXXX", HALLU_BINARY_DIR);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid_images();
    test_bad_headers();
    test_bad_lengths();
    test_round_trip();
    test_file_errors();
    test_writer_errors();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_summary();
}

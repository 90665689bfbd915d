/* Interop with PyTorch: reads DIR/py.safetensors (written by
 * tools/check_safetensors_interop.py) and checks every value, then writes
 * DIR/c.safetensors and DIR/c_*.npy for the script to check with
 * tools/safetensors_io.py and numpy.load. Values are the script's formulas. */
#include "hallu/io.h"
#include "check.h"

#include <string.h>

static void check_py_file(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/py.safetensors", dir);
    hallu_safetensors st;
    hallu_error err = {0};
    CHECK_OK(hallu_safetensors_open(&st, path, &err), &err);
    if (err.code != HALLU_OK)
        return;
    CHECK(st.num_tensors == 6);
    CHECK(hallu_safetensors_meta(&st, "producer") && strcmp(hallu_safetensors_meta(&st, "producer"), "torch") == 0);

    float f[12];
    CHECK_OK(hallu_safetensors_copy(&st, "f32", HALLU_DTYPE_F32, f, 12, &err), &err);
    const hallu_st_tensor *t = hallu_safetensors_find(&st, "f32");
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 4);
    for (int i = 0; i < 12; i++)
        CHECK(f[i] == (float)i * 0.5f - 3.0f);

    int64_t v[5];
    const int64_t want[5] = {0, -1, (int64_t)1 << 40, INT64_MAX, INT64_MIN};
    CHECK_OK(hallu_safetensors_copy(&st, "i64", HALLU_DTYPE_I64, v, 5, &err), &err);
    CHECK(memcmp(v, want, sizeof v) == 0);

    int32_t m[4];
    CHECK_OK(hallu_safetensors_copy(&st, "i32", HALLU_DTYPE_I32, m, 4, &err), &err);
    CHECK(m[0] == 7 && m[1] == -8 && m[2] == 9 && m[3] == -10);

    float s = 0;
    CHECK_OK(hallu_safetensors_copy(&st, "scalar", HALLU_DTYPE_F32, &s, 1, &err), &err);
    t = hallu_safetensors_find(&st, "scalar");
    CHECK(s == 2.5f && t && t->ndim == 0);

    t = hallu_safetensors_find(&st, "empty");
    CHECK(t && t->numel == 0 && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3);

    double d[3];
    CHECK_OK(hallu_safetensors_copy(&st, "caf\xc3\xa9.\xf0\x9f\x98\x80\"q\"", HALLU_DTYPE_F64, d, 3, &err), &err);
    CHECK(d[0] == 1.0 && d[1] == 2.0 && d[2] == 3.0);
    hallu_safetensors_close(&st);
}

static void write_c_files(const char *dir)
{
    char path[1024];
    float x[24];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i * 0.25f - 1.0f;
    int64_t v[3] = {3, -4, (int64_t)1 << 50};
    int32_t s = -11;
    hallu_st_entry t[3] = {
        {.name = "c.f32", .dtype = HALLU_DTYPE_F32, .ndim = 3, .shape = {2, 3, 4}, .data = x},
        {.name = "c.i64", .dtype = HALLU_DTYPE_I64, .ndim = 1, .shape = {3}, .data = v},
        {.name = "c.scalar", .dtype = HALLU_DTYPE_I32, .ndim = 0, .data = &s},
    };
    hallu_st_meta meta[2] = {{"producer", "hallu"}, {"quote", "a \"b\"\n\\"}};
    hallu_error err = {0};
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    CHECK_OK(hallu_safetensors_write(path, t, 3, meta, 2, &err), &err);
    int64_t shape[3] = {2, 3, 4};
    snprintf(path, sizeof path, "%s/c_f32.npy", dir);
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_F32, 3, shape, x, &err), &err);
    snprintf(path, sizeof path, "%s/c_i64.npy", dir);
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_I64, 1, (int64_t[]){3}, v, &err), &err);
    snprintf(path, sizeof path, "%s/c_i32.npy", dir);
    CHECK_OK(hallu_npy_write(path, HALLU_DTYPE_I32, 0, NULL, &s, &err), &err);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    check_py_file(argv[1]);
    write_c_files(argv[1]);
    return check_summary();
}

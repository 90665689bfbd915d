#include "hallu/core.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[HALLU_DTYPE_COUNT] = {
    [HALLU_DTYPE_F32] = {"F32", 4},  [HALLU_DTYPE_I64] = {"I64", 8},   [HALLU_DTYPE_I32] = {"I32", 4},
    [HALLU_DTYPE_F64] = {"F64", 8},  [HALLU_DTYPE_F16] = {"F16", 2},   [HALLU_DTYPE_BF16] = {"BF16", 2},
    [HALLU_DTYPE_I16] = {"I16", 2},  [HALLU_DTYPE_I8] = {"I8", 1},     [HALLU_DTYPE_U8] = {"U8", 1},
    [HALLU_DTYPE_BOOL] = {"BOOL", 1}, [HALLU_DTYPE_U16] = {"U16", 2}, [HALLU_DTYPE_U32] = {"U32", 4},
    [HALLU_DTYPE_U64] = {"U64", 8},
};

size_t hallu_dtype_size(hallu_dtype dt)
{
    return (unsigned)dt < HALLU_DTYPE_COUNT ? dtype_table[dt].size : 0;
}

const char *hallu_dtype_name(hallu_dtype dt)
{
    return (unsigned)dt < HALLU_DTYPE_COUNT ? dtype_table[dt].name : "?";
}

void hallu_u8_normalize_table(float table[3][256], const float mean[3], const float std[3])
{
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            table[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
}

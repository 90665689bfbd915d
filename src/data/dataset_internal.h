/* Internals shared by the dataset readers: the reader vtable behind
 * hallu_dataset, file helpers, and the memory-buffer entry points that the
 * fuzz targets call without touching the file system. */
#ifndef HALLU_DATA_DATASET_INTERNAL_H
#define HALLU_DATA_DATASET_INTERNAL_H

#include "hallu/data.h"

#include <stdbool.h>

typedef struct dataset_ops {
    hallu_status (*get)(const hallu_dataset *ds, int64_t i, hallu_image *img, int32_t *label,
                        hallu_error *err);
    hallu_status (*label)(const hallu_dataset *ds, int64_t i, int32_t *label, hallu_error *err);
    void (*describe)(const hallu_dataset *ds, int64_t i, char *buf, size_t bufsize);
    /* Image size from the header only; NULL for fixed-size kinds. */
    hallu_status (*probe)(const hallu_dataset *ds, int64_t i, int *h, int *w, hallu_error *err);
    void (*destroy)(void *impl);
} dataset_ops;

struct hallu_dataset {
    const dataset_ops *ops;
    void *impl;
    const char *kind;
    int64_t size;
    int num_classes;
    char **class_names;      /* num_classes owned strings */
    int h, w;                /* 0 when variable / unknown */
    size_t max_bytes;
    /* Set by hallu_dataset_probe_sizes: the first image whose size differs
     * from image 0's (-1 when none) and the two sizes, for error messages. */
    int64_t odd_index;
    int odd_h, odd_w, first_h, first_w;
};

/* Wraps impl (taken over: destroyed on failure too). */
hallu_status dataset_create(hallu_dataset **out, const char *kind, const dataset_ops *ops,
                            void *impl, hallu_error *err);

/* ---- reader constructors (one per KIND) -------------------------------- */
hallu_status cifar_open(hallu_dataset **out, const char *dir, int variant, hallu_split split,
                        hallu_error *err);
hallu_status stl10_open(hallu_dataset **out, const char *dir, hallu_split split,
                        hallu_error *err);
hallu_status folder_open(hallu_dataset **out, const char *dir, hallu_split split,
                         hallu_error *err);
hallu_status tinyimagenet_open(hallu_dataset **out, const char *dir, hallu_split split,
                               hallu_error *err);
hallu_status synthetic_open(hallu_dataset **out, const char *arg, hallu_split split,
                            hallu_error *err);
hallu_status packed_open_spec(hallu_dataset **out, const char *path, hallu_split split,
                              hallu_error *err);

/* ---- memory entry points (fuzzing, tests) ------------------------------- */
typedef struct data_buffer {
    const uint8_t *data;
    size_t size;
    const char *name;        /* for messages */
} data_buffer;

/* variant 10 or 100. Buffers must outlive the dataset. */
hallu_status cifar_open_buffers(hallu_dataset **out, int variant, const data_buffer *bufs,
                                int nbufs, hallu_error *err);
/* y may have data == NULL (unlabeled). */
hallu_status stl10_open_buffers(hallu_dataset **out, const data_buffer *x, const data_buffer *y,
                                hallu_error *err);
hallu_status packed_open_buffer(hallu_dataset **out, const data_buffer *buf, hallu_split want,
                                bool check_split, bool verify_pixels, hallu_error *err);

/* val_annotations.txt: for each line "FILE\tWNID\t..." finds WNID in the
 * sorted wnids and returns files (owned strings) with their labels. */
hallu_status tinyimagenet_parse_annotations(const char *text, size_t len, const char *name,
                                            char *const *wnids, int nwnids, char ***files,
                                            int32_t **labels, int64_t *count, hallu_error *err);

/* ---- file-list datasets (reader_folder.c) -------------------------------- */
typedef struct files_impl {
    char *root;              /* paths are relative to it */
    char **paths;
    int32_t *labels;
    int64_t n, cap;
} files_impl;

extern const char *const image_exts[];   /* jpg, jpeg, png */
void files_impl_destroy(void *impl);
/* Appends dir/name (or name when dir is NULL). */
hallu_status files_impl_push(files_impl *f, const char *dir, const char *name, int32_t label,
                             hallu_error *err);
/* Takes over f and class_names (freed on failure too). */
hallu_status files_dataset_create(hallu_dataset **out, const char *kind, files_impl *f,
                                  char **class_names, int num_classes, hallu_error *err);

/* ---- packed files (packed.c) ----------------------------------------------- */
typedef struct packed_header {
    uint32_t version, split, h, w, channels, num_classes;
    uint64_t count, names_offset, names_bytes, pixels_offset, labels_offset, file_size;
    uint64_t pixels_sum, meta_sum, header_sum;
} packed_header;

/* Writes the header (with its checksum in bytes 120..127) into b. */
void packed_header_encode(const packed_header *hd, uint8_t b[HALLU_PACKED_HEADER_BYTES]);

/* ---- file helpers (dataset_util.c) --------------------------------------- */
typedef struct mapped_file {
    const uint8_t *data;
    size_t size;
    char *path;
} mapped_file;

/* Maps path read-only; fails on a missing or empty file. */
hallu_status map_file(mapped_file *mf, const char *path, const char *what, hallu_error *err);
void unmap_file(mapped_file *mf);

hallu_status read_whole_file(const char *path, uint8_t **data, size_t *size, hallu_error *err);
bool path_exists(const char *path, bool want_dir);
char *path_join(const char *a, const char *b);

/* Sorted (strcmp) entries of dir: subdirectories (want_dirs) or regular files
 * whose extension is one of exts (case-insensitive, NULL-terminated list).
 * Hidden entries are skipped. */
hallu_status list_dir(const char *dir, bool want_dirs, const char *const *exts, char ***names,
                      int64_t *count, hallu_error *err);
void free_strings(char **s, int64_t n);

/* Lines of a text buffer, whitespace-trimmed, empty ones dropped. */
hallu_status split_lines(const char *text, size_t len, const char *name, char ***lines,
                         int64_t *count, hallu_error *err);
/* Class names: from file when it exists (must hold exactly n non-empty lines),
 * else "0".."n-1". */
hallu_status class_names_load(char ***names, int n, const char *path, hallu_error *err);
hallu_status class_names_default(char ***names, int n, hallu_error *err);

/* Checks img->capacity for h x w, sets img->h/w. */
hallu_status image_prepare(hallu_image *img, int h, int w, const char *what, hallu_error *err);

#endif

/* Writes a small seed corpus for each fuzz target (scripts/fuzz.sh runs it):
 * valid inputs of every flavour, so that a 20-second run starts deep inside
 * the parsers instead of at their magic-number checks. The JSON targets get
 * text as hallu train writes it (config.json, metrics.jsonl lines).
 * usage: make_seeds CORPUS_DIR */
#include "data/dataset_internal.h"
#include "test_data_util.h"

static void seed(const char *root, const char *target, const char *name, const void *a,
                 size_t na, const void *b, size_t nb)
{
    char dir[4096], file[4096];
    snprintf(dir, sizeof dir, "%s/%s", root, target);
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/%s", dir, name);
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb)) {
        perror(file);
        exit(1);
    }
    fclose(f);
}

static void image_seeds(const char *root)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz_jpeg", root);
    mkdir(dir, 0755);
    uint8_t rgb[8 * 6 * 3], gray[8 * 6], cmyk[8 * 6 * 4], rgb16[8 * 6 * 6];
    tdu_pattern(rgb, 8, 6, 1);
    for (int i = 0; i < 48; i++) {
        gray[i] = (uint8_t)(i * 5);
        memcpy(cmyk + 4 * i, rgb + 3 * i, 3);
        cmyk[4 * i + 3] = (uint8_t)(200 + i);
        for (int c = 0; c < 6; c++)
            rgb16[6 * i + c] = (uint8_t)(rgb[3 * i + c / 2] + c);
    }
    tdu_write_jpeg(dir, "rgb.jpg", 8, 6, 3, JCS_RGB, rgb, 90);
    tdu_write_jpeg(dir, "gray.jpg", 8, 6, 1, JCS_GRAYSCALE, gray, 90);
    tdu_write_jpeg(dir, "cmyk.jpg", 8, 6, 4, JCS_CMYK, cmyk, 90);
    snprintf(dir, sizeof dir, "%s/fuzz_png", root);
    mkdir(dir, 0755);
    png_color pal[3] = { { 1, 2, 3 }, { 200, 100, 0 }, { 9, 9, 250 } };
    uint8_t idx[48];
    for (int i = 0; i < 48; i++)
        idx[i] = (uint8_t)(i % 3);
    tdu_write_png(dir, "rgb.png", 8, 6, PNG_COLOR_TYPE_RGB, 8, rgb, 24, NULL, 0);
    tdu_write_png(dir, "gray.png", 8, 6, PNG_COLOR_TYPE_GRAY, 8, gray, 8, NULL, 0);
    tdu_write_png(dir, "palette.png", 8, 6, PNG_COLOR_TYPE_PALETTE, 8, idx, 8, pal, 3);
    tdu_write_png(dir, "rgb16.png", 8, 6, PNG_COLOR_TYPE_RGB, 16, rgb16, 48, NULL, 0);
    tdu_write_png(dir, "rgba.png", 8, 6, PNG_COLOR_TYPE_RGB_ALPHA, 8, cmyk, 32, NULL, 0);
}

static void binary_seeds(const char *root)
{
    static uint8_t rec[2 * 3074], stl[2 + 2 + 2 * 27648];
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 7);
    rec[0] = 3;
    rec[3073] = 9;
    uint8_t v10 = 0x40, v100 = 0x41;
    seed(root, "fuzz_cifar", "cifar10", &v10, 1, rec, 2 * 3073);
    rec[0] = 19;
    rec[1] = 99;
    rec[3074] = 0;
    rec[3075] = 5;
    seed(root, "fuzz_cifar", "cifar100", &v100, 1, rec, 2 * 3074);
    stl[0] = 2;
    stl[2] = 1;
    stl[3] = 10;
    for (size_t i = 4; i < sizeof stl; i++)
        stl[i] = (uint8_t)(i * 13);
    seed(root, "fuzz_stl10", "labelled", stl, sizeof stl, NULL, 0);
    stl[0] = stl[1] = 0xff;
    seed(root, "fuzz_stl10", "unlabeled", stl, 2, stl + 4, 27648);
    const char *ann = "val_0.JPEG\tn01629819\t0\t3\t44\t62\nval_1.JPEG\tn12267677\t1\t1\t5\t5\r\n\n"
                      "val_2.JPEG\tn01443537\n";
    seed(root, "fuzz_tinyimagenet", "annotations", ann, strlen(ann), NULL, 0);
}

static void seed_text(const char *root, const char *target, const char *name, const char *text)
{
    seed(root, target, name, text, strlen(text), NULL, 0);
}

/* config.json as src/train/run_dir.c writes it, and hand-edited variants. */
static void config_seeds(const char *root)
{
    seed_text(root, "fuzz_config", "simclr.json",
              "{\"method\": \"simclr\", \"hallucinator\": 1, \"hal_init\": \"residual\", \"hal_ratio_max\": 0.1, "
              "\"hal_fixed_ratio\": -1, \"hal_hidden\": 0, \"enqueue_duplicates\": 0, \"mask_duplicates\": 0, "
              "\"fix_pred_lr\": 0, \"temperature\": 0.5, \"base_temperature\": 0, \"queue_size\": 4096, "
              "\"moco_momentum\": 0.99000001, \"bn_splits\": 1, \"proj_dim\": 128, \"data\": \"synthetic:400\", "
              "\"train_subset\": 0, \"arch\": \"resnet18\", \"stem\": \"cifar\", \"zero_init_residual\": 0, "
              "\"optimizer\": \"sgd\", \"epochs\": 2, \"batch_size\": 100, \"warmup_epochs\": 0, \"lr\": 0.02, "
              "\"momentum\": 0.9, \"weight_decay\": 0.0005, \"seed\": 0, \"threads\": 0, \"image_size\": [32, 32]}\n");
    seed_text(root, "fuzz_config", "mocov2.json",
              "{\"method\": \"mocov2\", \"hallucinator\": 0, \"hal_init\": \"reference\", \"hal_ratio_max\": 0.25, "
              "\"hal_fixed_ratio\": 1e-3, \"hal_hidden\": 1024, \"enqueue_duplicates\": 1, \"mask_duplicates\": 0, "
              "\"fix_pred_lr\": 0, \"temperature\": 0.2, \"base_temperature\": 0.07, \"queue_size\": 65536, "
              "\"moco_momentum\": 0.999, \"bn_splits\": 8, \"proj_dim\": 128, "
              "\"data\": \"imagefolder:/data/my \\\"imgs\\\"\\\\train\\u0009x\", \"train_subset\": 50000, "
              "\"arch\": \"resnet50\", \"stem\": \"imagenet\", \"zero_init_residual\": 1, \"crop\": \"ccrop\", "
              "\"optimizer\": \"lars\", \"epochs\": 800, \"batch_size\": 512, \"warmup_epochs\": 10, \"lr\": 0.06, "
              "\"momentum\": 0.9, \"weight_decay\": 5e-4, \"seed\": 18446744073709551615, \"threads\": 16, "
              "\"image_size\": [96, 96], \"init\": \"/w/resnet50.safetensors\"}\n");
    seed_text(root, "fuzz_config", "edited.json",
              "{\n  \"method\": \"simsiam\",\n  \"fix-pred-lr\": true,\n  \"no_knn_floor\": true,\n"
              "  \"hallucinator\": false,\n  \"resume\": null,\n  \"keep_best\": 1,\n  \"lr\": 5E-2,\n"
              "  \"out\": \"runs/a\\/b\",\n  \"config\": \"other.json\"\n}\n");
    seed_text(root, "fuzz_config", "empty.json", " { } ");
}

/* metrics.jsonl as src/train/trainer.c writes it (hallu_json_obj: %.9g numbers). */
static void metrics_seeds(const char *root)
{
    char text[8192];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n,
                          "{\"epoch\":0,\"step\":0,\"knn_floor_top1\":41,\"knn_floor_top5\":89}\n");
    for (int e = 0; e < 3; e++) {
        for (int s = 2; s <= 4; s += 2)
            n += (size_t)snprintf(text + n, sizeof text - n,
                                  "{\"epoch\":%d,\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"collapse_std\":0.0374548063,"
                                  "\"images_per_s\":43.7766116,\"data_wait\":0.00219150106}\n",
                                  e, 4 * e + s, 5.94129848 - 0.1 * (4 * e + s), 0.013826834 / (1 + e));
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "{\"epoch\":%d,\"step\":%d,\"knn_top1\":%.9g,\"knn_top5\":83}\n", e, 4 * e + 4, 38.5 + e);
    }
    seed_text(root, "fuzz_metrics", "run.jsonl", text);
    /* A crash mid-append leaves a torn last line, which the reader skips. */
    snprintf(text + n, sizeof text - n, "{\"epoch\":3,\"step\":14,\"loss\":5.1");
    seed_text(root, "fuzz_metrics", "torn.jsonl", text);
    seed_text(root, "fuzz_metrics", "nosteps.jsonl",
              "{\"epoch\": 0, \"loss\": 2, \"lr\": 0.1}\r\n{\"epoch\": 0, \"loss\": 1.5, \"lr\": 0.1, \"note\": \"a \\\"b\\\"\"}\n"
              "\n{\"epoch\": 0, \"knn_top1\": 40, \"extra\": [1, {\"loss\": 9}, null, true, false]}\n"
              "{\"epoch\": 1, \"loss\": -1e-3, \"lr\": 5e-2}\n");
}

static void packed_seed(const char *root)
{
    hallu_dataset *ds;
    hallu_error err;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed.hpk", root);
    if (hallu_dataset_open(&ds, "synthetic:10", HALLU_SPLIT_TRAIN, &err) != HALLU_OK ||
        hallu_packed_write(ds, HALLU_SPLIT_TRAIN, path, NULL, NULL, &err) != HALLU_OK) {
        fprintf(stderr, "make_seeds: %s\n", err.msg);
        exit(1);
    }
    hallu_dataset_close(ds);
    size_t n;
    uint8_t *b = tdu_read(root, "seed.hpk", &n);
    uint8_t plain = 0, repair = 1;
    seed(root, "fuzz_packed", "synthetic10", &plain, 1, b, n);
    seed(root, "fuzz_packed", "synthetic10_repair", &repair, 1, b, n);
    free(b);
    remove(path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    image_seeds(argv[1]);
    binary_seeds(argv[1]);
    packed_seed(argv[1]);
    config_seeds(argv[1]);
    metrics_seeds(argv[1]);
    return 0;
}

/* hallu knn: the InstDisc-style kNN accuracy of a frozen backbone. */
#include "cli/commands.h"
#include "cli/eval_common.h"
#include "hallu/io.h"

#include <stdio.h>

typedef struct knn_args {
    const char *train_data, *test_data, *train_split, *test_split, *json;
    hallu_knn_config knn;
    double temperature;
} knn_args;

static int check_args(const knn_args *k, const cli_backbone_args *b, const char *cmd)
{
    if (!k->train_data || !k->test_data) {
        fprintf(stderr, "error: %s needs --train-data SPEC and --test-data SPEC (see '%s --help')\n", cmd, cmd);
        return 2;
    }
    if (k->knn.k <= 0 || !(k->temperature > 0)) {
        fprintf(stderr, "error: --k %d / --temperature %g: expected k >= 1 and temperature > 0\n", k->knn.k,
                k->temperature);
        return 2;
    }
    return cli_backbone_check(b, cmd);
}

static int write_json(const char *path, const hallu_knn_result *r, const knn_args *k, int64_t n_train, int dim)
{
    hallu_json_obj o;
    hallu_json_obj_init(&o);
    hallu_json_obj_add_num(&o, "knn_top1", r->top1);
    hallu_json_obj_add_num(&o, "knn_top5", r->top5);
    hallu_json_obj_add_int(&o, "k", k->knn.k);
    hallu_json_obj_add_num(&o, "temperature", k->temperature);
    hallu_json_obj_add_int(&o, "train_samples", n_train);
    hallu_json_obj_add_int(&o, "test_samples", r->n);
    hallu_json_obj_add_int(&o, "feature_dim", dim);
    hallu_error err;
    hallu_error_clear(&err);
    const char *text = hallu_json_obj_finish(&o, &err);
    char line[2100];
    int n = text ? snprintf(line, sizeof line, "%s\n", text) : 0;
    if (!text || hallu_atomic_write(path, line, (size_t)n, &err) != HALLU_OK) {
        fprintf(stderr, "error: --json %s: %s\n", path, err.msg);
        return 1;
    }
    return 0;
}

static int run_knn(const knn_args *k, const cli_backbone_args *b)
{
    cli_backbone bb;
    hallu_dataset *train_ds = NULL, *test_ds = NULL;
    hallu_feature_set train = { 0 }, test = { 0 };
    int rc = cli_backbone_open(&bb, b);
    if (rc == 0) rc = cli_open_labelled(k->train_data, k->train_split, "train-data", "train-split", &train_ds);
    if (rc == 0) rc = cli_open_labelled(k->test_data, k->test_split, "test-data", "test-split", &test_ds);
    int classes = train_ds ? hallu_dataset_num_classes(train_ds) : 0;
    if (rc == 0 && hallu_dataset_num_classes(test_ds) != classes) {
        fprintf(stderr, "error: --train-data has %d classes but --test-data %d\n", classes,
                hallu_dataset_num_classes(test_ds));
        rc = 1;
    }
    if (rc == 0) rc = cli_extract(&bb, b, train_ds, 1, "train", &train);
    if (rc == 0) rc = cli_extract(&bb, b, test_ds, 1, "test", &test);
    hallu_knn_result res;
    hallu_error err;
    hallu_error_clear(&err);
    if (rc == 0 && hallu_knn_evaluate(bb.be, &train, &test, classes, &k->knn, NULL, &res, &err) != HALLU_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    }
    if (rc == 0) {
        printf("kNN (k=%d, T=%g, %lld train / %lld test, %d-d features): top-1 %.2f%%  top-5 %.2f%%\n", k->knn.k,
               k->temperature, (long long)train.n, (long long)test.n, train.dim, res.top1, res.top5);
        if (k->json)
            rc = write_json(k->json, &res, k, train.n, train.dim);
    }
    hallu_feature_set_free(&train);
    hallu_feature_set_free(&test);
    hallu_dataset_close(train_ds);
    hallu_dataset_close(test_ds);
    cli_backbone_free(&bb);
    return rc;
}

int cmd_knn(int argc, char **argv)
{
    knn_args k = { .train_split = "train", .test_split = "test" };
    hallu_knn_config_default(&k.knn);
    k.temperature = 0.1;   /* the library's default, as the double the user would type */
    cli_backbone_args b;
    cli_backbone_args_default(&b);
    cli_arg args[] = {
        { "train-data", CLI_ARG_STR, &k.train_data, "labelled reference set SPEC (e.g. cifar10:DIR; see `hallu data --help`)" },
        { "test-data", CLI_ARG_STR, &k.test_data, "held-out set SPEC" },
        { "train-split", CLI_ARG_STR, &k.train_split, "split of --train-data: train | test | unlabeled" },
        { "test-split", CLI_ARG_STR, &k.test_split, "split of --test-data" },
        { "k", CLI_ARG_INT, &k.knn.k, "neighbours that vote" },
        { "temperature", CLI_ARG_FLOAT, &k.temperature, "vote weight exp(cosine / T)" },
        { "json", CLI_ARG_STR, &k.json, "also write the result as JSON to this file (atomically)" },
        { "batch-size", CLI_ARG_INT, &b.batch_size, "images per backbone forward" },
        CLI_BACKBONE_ARGS(&b),
    };
    cli_parse_result r = cli_parse("hallu knn --checkpoint FILE --train-data SPEC --test-data SPEC [options]",
                                   "kNN accuracy of a frozen backbone (InstDisc protocol): cosine similarity of "
                                   "L2-normalised features, the k nearest training images vote with weight "
                                   "exp(sim / T). Prints top-1 and top-5.",
                                   args, (int)(sizeof args / sizeof args[0]), argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    k.knn.temperature = (float)k.temperature;
    int rc = check_args(&k, &b, argv[0]);
    return rc ? rc : run_knn(&k, &b);
}

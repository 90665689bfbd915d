/* hallu linear: the linear-probe accuracy of a frozen backbone. */
#include "cli/commands.h"
#include "cli/eval_common.h"
#include "hallu/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct linear_args {
    const char *train_data, *test_data, *train_split, *test_split;
    const char *milestones, *metrics, *save_head;
    int cache_features, seed;
    hallu_probe_config probe;
} linear_args;

/* "60,80" -> milestones; "" -> none. */
static int parse_milestones(const char *text, hallu_probe_config *cfg)
{
    cfg->num_milestones = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        int prev = cfg->num_milestones ? cfg->milestones[cfg->num_milestones - 1] : 0;
        if (end == p || errno || v <= prev || v > 1000000 || (*end && *end != ',') ||
            cfg->num_milestones == HALLU_PROBE_MAX_MILESTONES) {
            fprintf(stderr, "error: --milestones expects up to %d increasing positive epochs like 60,80, got '%s'\n",
                    HALLU_PROBE_MAX_MILESTONES, text);
            return 2;
        }
        cfg->milestones[cfg->num_milestones++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int check_args(linear_args *l, const cli_backbone_args *b, const char *cmd)
{
    const hallu_probe_config *p = &l->probe;
    if (!l->train_data || !l->test_data) {
        fprintf(stderr, "error: %s needs --train-data SPEC and --test-data SPEC (see '%s --help')\n", cmd, cmd);
        return 2;
    }
    if (p->epochs <= 0 || p->batch_size <= 0 || !(p->lr > 0) || p->momentum < 0 || p->weight_decay < 0 ||
        !(p->gamma > 0) || l->seed < 0) {
        fprintf(stderr, "error: expected --epochs >= 1, --batch-size >= 1, --lr > 0, --momentum >= 0, "
                        "--weight-decay >= 0, --gamma > 0, --seed >= 0 (got %d, %d, %g, %g, %g, %g, %d)\n",
                p->epochs, p->batch_size, p->lr, p->momentum, p->weight_decay, p->gamma, l->seed);
        return 2;
    }
    l->probe.seed = (uint64_t)l->seed;
    int rc = parse_milestones(l->milestones, &l->probe);
    return rc ? rc : cli_backbone_check(b, cmd);
}

typedef struct epoch_report {
    const char *metrics;
    int epochs;
} epoch_report;

static hallu_status on_epoch(void *user, const hallu_probe_epoch *e, hallu_error *err)
{
    const epoch_report *r = user;
    fprintf(stderr, "epoch %d/%d  lr %.4g  loss %.4f  train top-1 %.2f%%  test top-1 %.2f%%  top-5 %.2f%%  (%.1f s)\n",
            e->epoch + 1, r->epochs, e->lr, e->train_loss, e->train_top1, e->test_top1, e->test_top5, e->seconds);
    if (!r->metrics)
        return HALLU_OK;
    hallu_json_obj o;
    hallu_json_obj_init(&o);
    hallu_json_obj_add_int(&o, "epoch", e->epoch);
    hallu_json_obj_add_num(&o, "lr", e->lr);
    hallu_json_obj_add_num(&o, "train_loss", e->train_loss);
    hallu_json_obj_add_num(&o, "train_top1", e->train_top1);
    hallu_json_obj_add_num(&o, "test_top1", e->test_top1);
    hallu_json_obj_add_num(&o, "test_top5", e->test_top5);
    hallu_json_obj_add_num(&o, "seconds", e->seconds);
    const char *line = hallu_json_obj_finish(&o, err);
    return line ? hallu_jsonl_append(r->metrics, line, err) : err->code;
}

static int train_probe(cli_backbone *bb, const cli_backbone_args *b, linear_args *l, const hallu_dataset *train_ds,
                       const hallu_feature_set *test, int classes, hallu_probe_result *res, hallu_params *head)
{
    hallu_error err;
    hallu_error_clear(&err);
    hallu_status s;
    if (l->cache_features) {
        hallu_feature_set train = { 0 };
        if (cli_extract(bb, b, train_ds, 0, "train", &train) != 0)
            return 1;
        s = hallu_linear_probe_features(bb->be, &train, test, classes, &l->probe, res, head, &err);
        hallu_feature_set_free(&train);
    } else {
        hallu_view_pipeline view;
        s = hallu_probe_train_pipeline(&view, bb->size, bb->mean, bb->std, &err);
        hallu_source src;
        hallu_source_from_dataset(&src, train_ds);
        hallu_nn_ctx ctx = { .be = bb->be, .ps = &bb->ps, .training = 0 };
        l->probe.forward_batch = b->batch_size;
        if (s == HALLU_OK)
            s = hallu_linear_probe_images(bb->net, &ctx, &src, &view, test, classes, &l->probe, res, head, &err);
    }
    if (s != HALLU_OK) {
        fprintf(stderr, "error: linear probe: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int save_head(const char *path, hallu_params *head, const hallu_probe_result *res)
{
    char top1[32];
    snprintf(top1, sizeof top1, "%.4f", res->final_top1);
    hallu_st_meta meta[] = { { "format", "hallu-linear-probe" }, { "final_top1", top1 } };
    hallu_error err;
    hallu_error_clear(&err);
    if (hallu_params_save(head, path, NULL, NULL, meta, 2, &err) != HALLU_OK) {
        fprintf(stderr, "error: --save-head: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int run_linear(linear_args *l, const cli_backbone_args *b)
{
    cli_backbone bb;
    hallu_dataset *train_ds = NULL, *test_ds = NULL;
    hallu_feature_set test = { 0 };
    hallu_params head;
    hallu_params_init(&head);
    hallu_probe_result res;
    int rc = cli_backbone_open(&bb, b);
    if (rc == 0) rc = cli_open_labelled(l->train_data, l->train_split, "train-data", "train-split", &train_ds);
    if (rc == 0) rc = cli_open_labelled(l->test_data, l->test_split, "test-data", "test-split", &test_ds);
    int classes = train_ds ? hallu_dataset_num_classes(train_ds) : 0;
    if (rc == 0 && hallu_dataset_num_classes(test_ds) != classes) {
        fprintf(stderr, "error: --train-data has %d classes but --test-data %d\n", classes,
                hallu_dataset_num_classes(test_ds));
        rc = 1;
    }
    if (rc == 0) rc = cli_extract(&bb, b, test_ds, 0, "test", &test);
    epoch_report rep = { .metrics = l->metrics, .epochs = l->probe.epochs };
    l->probe.on_epoch = on_epoch;
    l->probe.user = &rep;
    if (rc == 0) rc = train_probe(&bb, b, l, train_ds, &test, classes, &res, &head);
    if (rc == 0 && l->save_head) rc = save_head(l->save_head, &head, &res);
    if (rc == 0)
        printf("linear probe (%s, %d epochs): final top-1 %.2f%% (top-5 %.2f%%), best top-1 %.2f%% at epoch %d\n",
               l->cache_features ? "cached un-augmented train features" : "augmented train views", res.epochs,
               res.final_top1, res.final_top5, res.best_top1, res.best_epoch + 1);
    hallu_params_free(&head);
    hallu_feature_set_free(&test);
    hallu_dataset_close(train_ds);
    hallu_dataset_close(test_ds);
    cli_backbone_free(&bb);
    return rc;
}

int cmd_linear(int argc, char **argv)
{
    linear_args l = { .train_split = "train", .test_split = "test", .milestones = "60,80" };
    hallu_probe_config_default(&l.probe);
    l.seed = (int)l.probe.seed;
    cli_backbone_args b;
    cli_backbone_args_default(&b);
    cli_arg args[] = {
        { "train-data", CLI_ARG_STR, &l.train_data, "labelled training set SPEC (e.g. cifar10:DIR; see `hallu data --help`)" },
        { "test-data", CLI_ARG_STR, &l.test_data, "held-out set SPEC (top-1 reported on it)" },
        { "train-split", CLI_ARG_STR, &l.train_split, "split of --train-data: train | test | unlabeled" },
        { "test-split", CLI_ARG_STR, &l.test_split, "split of --test-data" },
        { "epochs", CLI_ARG_INT, &l.probe.epochs, "training epochs of the linear head" },
        { "lr", CLI_ARG_FLOAT, &l.probe.lr, "SGD learning rate" },
        { "momentum", CLI_ARG_FLOAT, &l.probe.momentum, "SGD momentum" },
        { "weight-decay", CLI_ARG_FLOAT, &l.probe.weight_decay, "weight decay" },
        { "milestones", CLI_ARG_STR, &l.milestones, "epochs where lr *= gamma (comma-separated; \"\" = none)" },
        { "gamma", CLI_ARG_FLOAT, &l.probe.gamma, "lr factor at each milestone" },
        { "batch-size", CLI_ARG_INT, &l.probe.batch_size, "images per SGD step" },
        { "cache-features", CLI_ARG_BOOL, &l.cache_features,
          "train on features of the UN-augmented train images, computed once: much faster, but not the "
          "augmented protocol (RandomResizedCrop + flip every epoch); say so when reporting" },
        { "extract-batch-size", CLI_ARG_INT, &b.batch_size, "images per backbone forward (memory grows with it)" },
        { "seed", CLI_ARG_INT, &l.seed, "seed of the head's init, the shuffling and the augmentation" },
        { "metrics", CLI_ARG_STR, &l.metrics, "append one JSON line per epoch to this file" },
        { "save-head", CLI_ARG_STR, &l.save_head, "write the trained head (fc.weight, fc.bias) as .safetensors" },
        CLI_BACKBONE_ARGS(&b),
    };
    cli_parse_result r = cli_parse("hallu linear --checkpoint FILE --train-data SPEC --test-data SPEC [options]",
                                   "Linear probe of a frozen backbone (METHOD.md): a linear layer trained with SGD "
                                   "on the backbone's features of RandomResizedCrop + flip views, lr x gamma at the "
                                   "milestones; top-1 on un-augmented test images after every epoch.",
                                   args, (int)(sizeof args / sizeof args[0]), argc, argv, NULL, 0, NULL);
    if (r != CLI_PARSE_OK)
        return r == CLI_PARSE_HELP ? 0 : 2;
    int rc = check_args(&l, &b, argv[0]);
    return rc ? rc : run_linear(&l, &b);
}

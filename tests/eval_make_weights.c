/* Writes a hallu-initialised ResNet-18 (CIFAR stem) as torchvision-named
 * safetensors for the eval CLI tests (tests/eval_cli.cmake). */
#include "hallu/models.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: eval_make_weights OUT.safetensors\n");
        return 2;
    }
    hallu_error err;
    hallu_error_clear(&err);
    hallu_resnet_config cfg;
    hallu_params ps;
    hallu_params_init(&ps);
    hallu_resnet *net = NULL;
    hallu_backend *be = NULL;
    hallu_status s = hallu_backend_cpu_create(&be, 1, &err);
    if (s == HALLU_OK) s = hallu_resnet_parse_arch("resnet18", "cifar", &cfg, &err);
    if (s == HALLU_OK) s = hallu_resnet_create(&net, &cfg, &ps, "", &err);
    if (s == HALLU_OK) s = hallu_params_alloc(&ps, be, &err);
    if (s == HALLU_OK) s = hallu_resnet_init_weights(net, &ps, 5, &err);
    if (s == HALLU_OK) {
        s = hallu_params_save(&ps, argv[1], NULL, NULL, NULL, 0, &err);
    }
    if (s != HALLU_OK)
        fprintf(stderr, "eval_make_weights: %s\n", err.msg);
    hallu_resnet_free(net, NULL);
    hallu_params_free(&ps);
    hallu_backend_free(be);
    return s == HALLU_OK ? 0 : 1;
}

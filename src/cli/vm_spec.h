/* berth CLI: a VM spec (create) or merge patch (set) from command-line options and --from-json. */
#ifndef BERTH_CLI_VM_SPEC_H
#define BERTH_CLI_VM_SPEC_H

#include <jansson.h>

#include "cli/cli.h"

/* Read a JSON object from path ("-": stdin). EXIT_OK or EXIT_USAGE (printed). */
int vm_spec_load(const char *path, json_t **out);
/* Set the members of obj the options in a give (vcpus, memory, boot, disks, ...; for set also
 * name and the --no-* ones). Values berthd checks are passed through so that its error names
 * the field; only what cannot be expressed in JSON is refused here (EXIT_USAGE, printed). */
int vm_spec_apply(const struct cli *c, const struct cli_args *a, json_t *obj);

#endif

/* KVM exit dispatch table interface. */
#ifndef BERTH_EXIT_H
#define BERTH_EXIT_H

struct vcpu;

enum { EXIT_CONTINUE = 0, EXIT_STOP = 1 };
typedef int (*exit_handler_fn)(struct vcpu *v);

/* Handle the exit in v->run; EXIT_STOP ends the vCPU loop (the VM was asked to stop). */
int exit_dispatch(struct vcpu *v);

#endif

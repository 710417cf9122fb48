"""Per-thread CPU time of a running VMM, read from /proc (shared by the benchmarks)."""
import os


def thread_cpu(pid, with_sys=False):
    """{"name:tid": cpu seconds} of a live process; with_sys adds {"sys/name:tid": system seconds}."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / tick
        if with_sys:
            out[f"sys/{name}:{tid}"] = int(fields[12]) / tick
    return out

"""PNG plots of a benchmark run (matplotlib, headless)."""
import os


def _one_d(rows):
    return [r for r in rows if r["shape"][0] == 1]


def plot_all(results, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _one_d(results["rows"])
    caches = results["caches"]
    paths = []

    def cache_lines(ax):
        for level, size in caches.items():
            ax.axvline(size / 8, color="grey", lw=0.8, ls=":")  # x and y of N floats fill the cache
            ax.text(size / 8, ax.get_ylim()[1], f" {level}", va="top", fontsize=8, color="grey")

    # 1. throughput vs N per algorithm and level, with the two-pass bandwidth bound
    fig, ax = plt.subplots(figsize=(9, 5.5))
    series = {}
    for r in rows:
        if r["what"] == "twopass" and r["mode"] == "out=":
            series.setdefault((r["level"], r["algorithm"]), []).append((r["elements"], r["gb_per_s"]))
    for (level, algorithm), points in sorted(series.items()):
        points.sort()
        ax.plot(*zip(*points), marker="o", ms=3, label=f"{level} {algorithm}",
                ls="-" if level != "python" else "--")
    bound = sorted((r["elements"], 8 * r["elements"] / (r["bounds_ns_per_element"]["two_pass"] * r["elements"]))
                   for r in rows if r["what"] == "bandwidth")
    if bound:
        ax.plot(*zip(*bound), color="black", lw=2, label="bandwidth bound, two-pass traffic")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (float32 elements, one row)")
    ax.set_ylabel("GB/s = 8N / time")
    ax.set_title("twopass softmax throughput, single thread, out=")
    cache_lines(ax)
    ax.legend(fontsize=7, ncol=2)
    paths.append(os.path.join(out_dir, "throughput.png"))
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    # 2. speedup of two-pass over each three-pass algorithm (and reload's blocked variant) vs N, per level
    fig, ax = plt.subplots(figsize=(9, 5))
    times = {(r["level"], r["algorithm"], r["elements"]): r["seconds"] for r in rows
             if r["what"] == "twopass" and r["mode"] == "out="}
    for level in sorted({k[0] for k in times}):
        for other in ("three_pass_reload", "three_pass_recompute", "blocked_reload"):
            points = sorted((n, times[(level, other, n)] / times[(level, "two_pass", n)])
                            for (lv, a, n) in times if lv == level and a == other and (level, "two_pass", n) in times)
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=f"{level}: two_pass vs {other}")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("N (float32 elements, one row)")
    ax.set_ylabel("speedup of two-pass (time other / time two-pass)")
    ax.set_title("two-pass over three-pass, same level, single thread")
    cache_lines(ax)
    ax.legend(fontsize=7)
    paths.append(os.path.join(out_dir, "speedup_two_pass.png"))
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    # 3. twopass vs peers: ns per element vs N
    fig, ax = plt.subplots(figsize=(9, 5.5))
    series = {}
    for r in rows:
        if r["what"] == "bandwidth":
            continue
        if r["what"] == "twopass" and not (r["algorithm"] in ("auto",) and r["level"] != "python"):
            continue
        name = r["what"] if r["what"] != "twopass" else f"twopass {r['level']} auto {r['mode']}"
        series.setdefault(name, []).append((r["elements"], r["ns_per_element"]))
    for name, points in sorted(series.items()):
        points.sort()
        ax.plot(*zip(*points), marker="o", ms=3, label=name, lw=2.5 if name.startswith("twopass") else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (float32 elements, one row)")
    ax.set_ylabel("ns per element (lower is better)")
    ax.set_title("twopass vs peers, single thread")
    cache_lines(ax)
    ax.legend(fontsize=7)
    paths.append(os.path.join(out_dir, "peers.png"))
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths

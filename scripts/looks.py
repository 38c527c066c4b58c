"""Multiple looks across sweep reports (docs/results.md): every interval the given
`report.json` files give (per configuration: top-1, top-5 and the stacked modules' top-1,
paired over seeds; each report's change along its axis, Welch), recomputed at the level that
holds all of them together at 95% (Bonferroni), and which still exclude zero.

    python3 scripts/looks.py runs/study-depth/report.json runs/study-depth-compute/report.json

Standard library only (Student's t from the regularised incomplete beta function)."""
import json, math, sys
from collections import defaultdict

def betacf(a, b, x):
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / d
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d; c = 1 + aa / c; d = 1 / d; h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d; c = 1 + aa / c; d = 1 / d
        de = d * c; h *= de
        if abs(de - 1) < 1e-15:
            break
    return h

def betai(a, b, x):
    if x <= 0: return 0.0
    if x >= 1: return 1.0
    bt = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return bt * betacf(a, b, x) / a
    return 1 - bt * betacf(b, a, 1 - x) / b

def t_cdf(t, df):
    x = df / (df + t * t)
    tail = 0.5 * betai(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail

def t_q(p, df):
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2

def mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))

fams = []
for path in sys.argv[1:]:
    r = json.load(open(path))
    by = defaultdict(list)
    for run in r["runs"]:
        by[run["point"]].append(run)
    for point, runs in by.items():
        for name, f in [("top-1", lambda x: x["assembled_top1"] - x["e2e"]["top1"]),
                        ("top-5", lambda x: x["assembled_top5"] - x["e2e"]["top5"]),
                        ("stacked top-1", lambda x: x["stacked_top1"] - x["e2e"]["top1"])]:
            d = [f(x) for x in runs if x.get("e2e")]
            if len(d) > 1:
                fams.append(("paired", f"{r['title']}: {point} {name}", d, None))
    if r.get("change"):
        c = r["change"]
        a = [x["assembled_top1"] - x["e2e"]["top1"] for x in by[c["to"]]]
        b = [x["assembled_top1"] - x["e2e"]["top1"] for x in by[c["from"]]]
        fams.append(("welch", f"{r['title']}: change {c['from']} -> {c['to']}", a, b))
M = len(fams)
level = 1 - 0.05 / M
print(f"{M} intervals; each at {100*level:.3f}%; check t(0.975, 2) = {t_q(0.975, 2):.4f} (4.3027)")
for kind, name, a, b in fams:
    if kind == "paired":
        m, sd = mean_sd(a); n = len(a)
        half = t_q(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    else:
        (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
        va, vb = sa * sa / len(a), sb * sb / len(b)
        df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
        m = ma - mb
        half = t_q(1 - (1 - level) / 2, df) * math.sqrt(va + vb)
    lo, hi = m - half, m + half
    flag = "SURVIVES" if lo > 0 or hi < 0 else ""
    print(f"{name}: {100*m:+.2f} [{100*lo:+.2f}, {100*hi:+.2f}] {flag}")

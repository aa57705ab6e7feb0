"""Counts of a walk (bench/walk/walk.sh): function entries, files, returns to a file
already left, and the same over the worker's layers with leaf modules (codecs, buffers,
timers, the router) left out. A second argument prints the sequence of layers."""
import sys
rows=[l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if not l.startswith('#')]
rows=[r for r in rows if len(r)==2]
start=next(i for i,r in enumerate(rows) if r[1].endswith('Worker::accept'))
end=max(i for i,r in enumerate(rows) if r[1].endswith('Worker::close'))
rows=rows[start:end+1]
def walk(seqsrc):
    seen=set(); prev=None; returns=0; seq=[]
    for f in seqsrc:
        if f!=prev:
            if f in seen: returns+=1
            seen.add(f); seq.append(f)
        prev=f
    return seen, seq, returns
seen,seq,returns=walk([f for f,_ in rows])
print(f"files: {len(rows)} function entries, {len(seen)} files, {len(seq)} file visits, {returns} returns to a file already left")
LEAF=('http/','router/','worker/env','worker/output','worker/buffer','worker/timer','worker/record','worker/clock','worker/token','worker/sinks','worker/transport/peer','worker/session/peer','worker/route','worker/spare','worker/exchange/spare','worker/upstream/pool','worker/upstream/balancer','worker/upstream/conn','worker/upstream/outlier','worker/gauges','worker/access_log','worker/events','hash')
def layer(f):
    f=f.replace('src/','')
    if f.startswith(LEAF): return None
    if f=='worker/mod.rs': return 'loop'
    for k in ('transport','session','exchange','filters','upstream'):
        if f.startswith('worker/'+k): return k
    if f.startswith('worker/exchange.rs'): return 'exchange'
    return f
layers=[l for l in (layer(f) for f,_ in rows) if l]
seen,seq,returns=walk(layers)
print(f"layers (leaves such as codecs, buffers, timers, the router left out): {len(seq)} layer visits, {returns} returns")
if len(sys.argv)>2 and sys.argv[2]: print(' -> '.join(seq))

import sys, json, time, collections, numpy as np, onnxruntime as ort
path=sys.argv[1]; prefix=sys.argv[2]
o=ort.SessionOptions(); o.intra_op_num_threads=2; o.enable_profiling=True; o.profile_file_prefix=prefix; o.log_severity_level=3
s=ort.InferenceSession(path,o,providers=["CPUExecutionProvider"])
ins={i.name:i for i in s.get_inputs()}
past=[n for n in ins if n.startswith("past")]
cache={n:np.zeros((1,3,0,64),np.float32) for n in past}
ids=list(range(100,228))
def step(ids,cache,pl):
    feed={"input_ids":np.array([ids],np.int64),"attention_mask":np.ones((1,pl+len(ids)),np.int64),**cache}
    if "position_ids" in ins: feed["position_ids"]=np.arange(pl,pl+len(ids))[None]
    out=s.run(None,feed); names=[x.name for x in s.get_outputs()]; d=dict(zip(names,out))
    return d["logits"], {n:d[n.replace("past_key_values.","present.")] for n in past}
t=time.perf_counter(); lg,cache=step(ids,cache,0); ttft=time.perf_counter()-t
times=[]
for i in range(32):
    t=time.perf_counter(); lg,cache=step([int(lg[0,-1].argmax())],cache,128+i); times.append(time.perf_counter()-t)
f=s.end_profiling()
ev=json.load(open(f))
agg=collections.Counter(); cnt=collections.Counter()
# only decode steps: find kernel events with seq len ... just aggregate all after first run
runs=[e for e in ev if e.get("name")=="model_run"]
t0=runs[1]["ts"] if len(runs)>1 else 0
tot=0
for e in ev:
    if e.get("cat")=="Node" and e["name"].endswith("_kernel_time") and e["ts"]>=t0:
        op=e["args"].get("op_name"); agg[op]+=e["dur"]; cnt[op]+=1; tot+=e["dur"]
print(f"ttft {ttft*1000:.0f} ms decode median {np.median(times)*1000:.1f} ms -> {1/np.median(times):.1f} tok/s")
for op,d in agg.most_common(15): print(f"{op:28s} {d/32/1000:7.2f} ms/step {100*d/tot:5.1f}%  n/step {cnt[op]/32:.0f}")
print("node total per step ms", tot/32/1000, "model_run per step", np.mean([r["dur"] for r in runs[1:]])/1000)

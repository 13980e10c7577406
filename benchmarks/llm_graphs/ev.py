import sys, json, numpy as np
from pathlib import Path
from edgeopt.backends.onnxruntime import genai
from edgeopt.metrics import language
from tokenizers import Tokenizer
folders = {a.split("=")[0]: Path(a.split("=")[1]) for a in sys.argv[2:]}
runs=int(sys.argv[1])
for f in folders.values():
    c=json.loads((f/"genai_config.json").read_text()); c["model"]["decoder"]["session_options"]["intra_op_num_threads"]=2
    (f/"genai_config.json").write_text(json.dumps(c,indent=2))
text=Path("/tmp/llm-bench/eval.txt").read_text()
ids=Tokenizer.from_file("/tmp/llm-bench/build/genai/tokenizer.json").encode(text).ids
chunks=language.windows(ids,512,8); prompts=[ids[i:i+128] for i in range(0,128*8,128)]
ref_s=genai.CausalSession(Path("/tmp/llm-bench/build/onnx_fp32/model.onnx"),2)
ref=language.score_windows(ref_s.score,None,chunks); ref_tok=[genai.greedy(ref_s,p,32) for p in prompts]
res={}
for n,f in folders.items():
    s=genai.CausalSession(f/"model.onnx",2)
    sc=language.score_windows(s.score,ref["log_probs"],chunks); tok=[genai.greedy(s,p,32) for p in prompts]
    res[n]=dict(ppl=sc["perplexity"],inc=sc["perplexity"]/ref["perplexity"]-1,kl=sc["kl_mean"],agree=language.agreement(tok,ref_tok))
    del s
runners={n:genai.GenaiRunner(f) for n,f in folders.items()}
tt={n:[] for n in folders}; st={n:[] for n in folders}
for _ in range(runs):
    for n,r in runners.items():
        _,t=r.generate(prompts[0],128); tt[n].append(t[0]); st[n]+=t[1:]
for n in folders:
    sp=language.speed(tt[n],st[n]); mb=sum(p.stat().st_size for p in folders[n].glob("model.onnx*"))/2**20
    print(f"{n:12s} MB {mb:5.0f} ppl {res[n]['ppl']:.3f} inc {res[n]['inc']*100:+.2f}% KL {res[n]['kl']:.4f} agree {res[n]['agree']*100:.0f}% TTFT {sp['ttft_ms']:.0f} ms decode {sp['decode_tokens_per_s']:.1f} tok/s", flush=True)
print("ref ppl", ref["perplexity"])

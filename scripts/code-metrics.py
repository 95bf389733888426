#!/usr/bin/env python3
"""Assertions per function, per module, and the longest functions (issue 18's measure).

Counts assert/precondition/assertionFailure/preconditionFailure calls and func/init declarations in
every module under Sources/ and clients/ (comments skipped); a function's length runs from its
declaration to the line where its braces close. Text-based, so an estimate, but the same estimate
before and after a change: run it on both and compare.

    python3 scripts/code-metrics.py
"""
import os, re, sys
root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
mods={}
for base in ['Sources','clients']:
    for d in sorted(os.listdir(os.path.join(root,base))):
        p=os.path.join(root,base,d)
        if not os.path.isdir(p): continue
        files=[os.path.join(dp,f) for dp,_,fs in os.walk(p) for f in fs if f.endswith('.swift')]
        if not files: continue
        a=fn=lines=0; funcs=[]
        for f in files:
            t=open(f).read().split('\n'); lines+=len(t)
            for i,l in enumerate(t):
                s=l.strip()
                if s.startswith('//'): continue
                a+=len(re.findall(r'\b(assert|precondition|assertionFailure|preconditionFailure)\s*\(',l))
                if re.search(r'\bfunc\s+\w|\binit\??\s*[(<]',l) and not s.startswith('///'):
                    fn+=1
                    # length: count until brace depth returns
                    depth=0; started=False; n=0
                    for j in range(i,len(t)):
                        depth+=t[j].count('{')-t[j].count('}'); n+=1
                        if '{' in t[j]: started=True
                        if started and depth<=0: break
                        if not started and j>i+5: break
                    m=re.search(r'(func\s+\w+|init)',l)
                    funcs.append((n,os.path.relpath(f,root)+':'+str(i+1)+' '+(m.group(1) if m else '')))
        mods[base+'/'+d]=(a,fn,lines,funcs)
allf=[]
print(f"{'module':32} {'asserts':>7} {'funcs':>6} {'per func':>8} {'lines':>6}")
for m,(a,fn,lines,funcs) in mods.items():
    print(f"{m:32} {a:7} {fn:6} {a/max(fn,1):8.2f} {lines:6}")
    allf+=funcs
print('\nlongest functions:')
for n,name in sorted(allf,reverse=True)[:15]: print(f"{n:5}  {name}")

#!/usr/bin/env python3
"""Work around a Portkey gateway bug so that its streamed answers work on Node.js.

@portkey-ai/gateway 1.15.2 appends x-portkey-* headers to the upstream `fetch` Response,
whose headers are immutable on Node.js; every streamed chat completion then fails with
`TypeError: immutable` ("Something went wrong"). See Portkey-AI/gateway issues 1389 and 1550
(fix proposed in pull request 1551). This patch makes ResponseService.updateHeaders copy the
response into one with mutable headers first, and makes create() use the returned response.
Idempotent; run by bench/run after `npm install`.
"""
import sys

path = sys.argv[1]
src = open(path, encoding="utf-8").read()
MARK = "x-bench-probe"
if MARK in src:
    print("portkey: patch already applied")
    sys.exit(0)
a_old = "this.updateHeaders(i,n.cacheStatus,o),{response:i"
a_new = "i=this.updateHeaders(i,n.cacheStatus,o),{response:i"
b_old = "updateHeaders(e,t,a){return e.headers.append("
b_new = ('updateHeaders(e,t,a){try{e.headers.append("x-bench-probe","1"),e.headers.delete("x-bench-probe")}'
         'catch(_){e=new Response(e.body,{status:e.status,statusText:e.statusText,headers:new Headers(e.headers)})}'
         'return e.headers.append(')
if src.count(a_old) != 1 or src.count(b_old) != 1:
    print("portkey: patch site not found (other version?); streams may fail", file=sys.stderr)
    sys.exit(0)
open(path, "w", encoding="utf-8").write(src.replace(a_old, a_new).replace(b_old, b_new))
print("portkey: patched ResponseService.updateHeaders (immutable headers on Node.js)")

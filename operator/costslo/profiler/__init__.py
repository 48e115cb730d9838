"""`costslo profile`: drive an OpenAI-compatible endpoint at rising concurrency, then say what a request
costs and what budget and replicas would hold. load.py sends the requests, analysis.py turns the steps
into capacity and money, plot.py draws them."""

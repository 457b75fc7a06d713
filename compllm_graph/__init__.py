"""compllm-graph: the Comp-LLM method (decompose, route, execute, aggregate) as a LangGraph graph."""

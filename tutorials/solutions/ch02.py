"""Chapter 2 reference solution: iterative post-order depth-first search."""


def topo_order(root):
    order, visited = [], set()
    stack = [(root, False)]  # (node, children already pushed?)
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)  # all of its inputs are already in `order`
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        for child in node._prev:
            if child not in visited:
                stack.append((child, False))
    return order

/// A first-in first-out queue on one array: `popFirst` moves a head index
/// and the consumed prefix is dropped once it is both large and more than
/// half of the storage, so every operation is amortised O(1) and memory is
/// bounded by about twice the live elements.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }

    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ e: Element) { storage.append(e) }

    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let e = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.count <= 4096)
            head = 0
        } else if head >= 1024 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return e
    }

    /// Live elements, oldest first (for searches; indices are 0..<count).
    subscript(i: Int) -> Element {
        get { storage[head + i] }
        set { storage[head + i] = newValue }
    }
}

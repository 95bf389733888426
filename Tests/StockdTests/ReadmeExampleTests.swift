import StockClient
import Testing
import TestSupport

/// The checkout-service example of README.md, verbatim but for the client's
/// port, run against a real server, so the README cannot drift from the API.
struct CheckoutExample {
    let stock: StockClient

    // "Buy" tapped in the stream: hold one unit for the default 90 s.
    func buy(sku: String, customer: String, checkoutID: String) async throws -> String? {
        do {
            let hold = try await stock.reserve(sku: sku, quantity: 1, customer: customer,
                                               idempotencyKey: checkoutID)  // a retry gets the same hold
            return hold.token.description       // 32 hex digits, kept with the checkout session
        } catch StockError.outOfStock {
            return nil                          // show "sold out" in the stream
        }
    }
    // Payment webhook: the sale is final, the order reference travels to the warehouse feed.
    func paid(token: String, orderID: String) async throws {
        try await stock.confirm(Token(hex: token)!, orderReference: orderID)
    }
    // Buyer cancelled: the units go straight back on sale (a forgotten hold expires by itself).
    func cancelled(token: String) async throws { try await stock.release(Token(hex: token)!) }
}

extension StockServerTests {
    @Test("README checkout example: buy, pay, cancel, sold out")
    func readmeCheckoutExample() async throws {
        let server = try StockdProcess(catalog: "LIPSTICK-07,2\n")
        let example = CheckoutExample(stock: StockClient(port: server.port, connections: 2, timeout: testCallTimeout))
        defer { example.stock.close() }
        let first = try #require(try await example.buy(sku: "LIPSTICK-07", customer: "c-1", checkoutID: "co-1"))
        #expect(try await example.buy(sku: "LIPSTICK-07", customer: "c-1", checkoutID: "co-1") == first)
        let second = try #require(try await example.buy(sku: "LIPSTICK-07", customer: "c-2", checkoutID: "co-2"))
        #expect(try await example.buy(sku: "LIPSTICK-07", customer: "c-3", checkoutID: "co-3") == nil)
        try await example.paid(token: first, orderID: "ORD-1")
        try await example.cancelled(token: second)
        let info = try await example.stock.stock("LIPSTICK-07")
        #expect(info.confirmed == 1 && info.available == 1 && info.reserved == 0)
    }
}

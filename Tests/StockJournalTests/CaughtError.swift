import StockJournal

/// The `JournalError` `body` throws (nil if it returns; other errors are a bug).
/// Tests match on the result instead of `catch let JournalError.case(...)`,
/// which crashes this compiler (SILGen "Found ownership error") in throwing tests.
func journalError(_ body: () throws -> Void) -> JournalError? {
    do {
        try body()
        return nil
    } catch let error as JournalError {
        return error
    } catch {
        fatalError("not a JournalError: \(error)")
    }
}

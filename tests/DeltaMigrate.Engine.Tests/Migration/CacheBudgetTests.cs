using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Engine.Tests.Migration;

public sealed class CacheBudgetTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task WhatFits_IsGrantedInFull()
    {
        var budget = new CacheBudget(512 * MiB);
        using var a = await budget.ReserveAsync("a", 128 * MiB, exact: false, CancellationToken.None);
        using var b = await budget.ReserveAsync("b", 256 * MiB, exact: true, CancellationToken.None);

        Assert.Equal(128 * MiB, a.Bytes);
        Assert.Equal(256 * MiB, b.Bytes);
        Assert.False(b.Shrunk);
        Assert.Equal(128 * MiB, budget.FreeBytes);
    }

    [Fact]
    public async Task ADefaultCache_IsShrunkToWhatIsFree_WhenThatIsAtLeastTheMinimum()
    {
        var budget = new CacheBudget(200 * MiB);
        using var first = await budget.ReserveAsync("first", 128 * MiB, exact: false, CancellationToken.None);
        using var second = await budget.ReserveAsync("second", 128 * MiB, exact: false, CancellationToken.None);

        Assert.True(second.Shrunk);
        Assert.Equal(72 * MiB, second.Bytes);
        Assert.Equal(1, second.OtherHolders);
        Assert.Equal(0, budget.FreeBytes);
    }

    [Fact]
    public async Task ADefaultCache_LargerThanTheWholeBudget_GetsTheBudget()
    {
        var budget = new CacheBudget(100 * MiB);
        using var alone = await budget.ReserveAsync("big", 2048 * MiB, exact: false, CancellationToken.None);

        Assert.Equal(100 * MiB, alone.Bytes);
        Assert.True(alone.Shrunk);
    }

    [Fact]
    public async Task WhenLessThanTheMinimumIsFree_ItWaitsForARelease()
    {
        var budget = new CacheBudget(100 * MiB);
        var first = await budget.ReserveAsync("first", 64 * MiB, exact: false, CancellationToken.None);
        var waiting = budget.ReserveAsync("second", 64 * MiB, exact: false, CancellationToken.None);

        // 36 MiB free is below the 64 MiB floor: not granted (ReserveAsync decides synchronously) until "first" lets go.
        Assert.False(waiting.IsCompleted);
        first.Dispose();
        using var second = await waiting.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(64 * MiB, second.Bytes);
        Assert.Equal(36 * MiB, budget.FreeBytes);
    }

    [Fact]
    public async Task AnExactSize_IsNeverShrunk_ItWaits()
    {
        var budget = new CacheBudget(200 * MiB);
        var first = await budget.ReserveAsync("first", 128 * MiB, exact: false, CancellationToken.None);
        var waiting = budget.ReserveAsync("exact", 100 * MiB, exact: true, CancellationToken.None);

        Assert.False(waiting.IsCompleted);
        first.Dispose();
        using var exact = await waiting.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(100 * MiB, exact.Bytes);
    }

    [Fact]
    public async Task WhatCannotFitEvenAlone_IsRefused_NamingVmSizesAndWhatToDo()
    {
        var budget = new CacheBudget(32 * MiB);

        var tooSmall = await Assert.ThrowsAsync<EngineException>(() => budget.ReserveAsync("web1", 128 * MiB, exact: false, CancellationToken.None));
        Assert.Equal("CacheBudgetExceeded", tooSmall.ErrorId);
        Assert.Equal("web1", tooSmall.Target);
        Assert.Contains("web1", tooSmall.Message, StringComparison.Ordinal);
        Assert.Contains($"{64 * MiB} bytes", tooSmall.Message, StringComparison.Ordinal);   // the minimum it needs
        Assert.Contains($"{32 * MiB} bytes", tooSmall.Message, StringComparison.Ordinal);   // what there is
        Assert.Contains("-MemoryBudget", tooSmall.Message, StringComparison.Ordinal);

        var large = new CacheBudget(512 * MiB);
        var exact = await Assert.ThrowsAsync<EngineException>(() => large.ReserveAsync("web2", 1024 * MiB, exact: true, CancellationToken.None));
        Assert.Equal("CacheBudgetExceeded", exact.ErrorId);
        Assert.Contains("-CacheSize", exact.Message, StringComparison.Ordinal);
        Assert.Equal(512 * MiB, large.FreeBytes);
    }

    [Fact]
    public async Task ReleaseIsIdempotent_AndACancelledWaitHoldsNothing()
    {
        var budget = new CacheBudget(100 * MiB);
        var held = await budget.ReserveAsync("held", 100 * MiB, exact: true, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var waiting = budget.ReserveAsync("waiter", 64 * MiB, exact: false, cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);

        held.Dispose();
        held.Dispose();
        Assert.Equal(100 * MiB, budget.FreeBytes);
    }

    [Fact]
    public void ParsesMemAvailable_InBytes()
    {
        const string meminfo = "MemTotal:       24683520 kB\nMemFree:        22216704 kB\nMemAvailable:   24102912 kB\nBuffers:          123 kB\n";
        Assert.Equal(24102912L * 1024, CacheBudget.ParseMemAvailable(meminfo));
        Assert.Throws<FormatException>(() => CacheBudget.ParseMemAvailable("MemTotal: 1 kB\n"));
    }

    [Fact]
    public void DefaultBudget_IsHalfOfThisHostsAvailableMemory()
    {
        var available = CacheBudget.ParseMemAvailable(File.ReadAllText("/proc/meminfo"));
        var budget = CacheBudget.FromAvailableMemory();
        // MemAvailable moves a little between the two reads.
        Assert.InRange(budget.TotalBytes, (available / 2) - (256 * MiB), (available / 2) + (256 * MiB));
    }
}

using System.Diagnostics;
using DeltaMigrate.Engine.Migration;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>Real QEMU VMs for the migration tests: the test guest, started and inspected the way an admin's would be.</summary>
internal static class TestVms
{
    /// <summary>The repository's root (the tests run from its bin folder).</summary>
    public static readonly string Root = FindRoot();

    public static readonly string Guest = Path.Combine(Root, "tests/guest/out/guest.elf");

    public static VmSpec Spec(string name) => new()
    {
        Name = name,
        MemoryBytes = 128L << 20,
        Kernel = Guest,
        Append = "ws=32 hot=8 rate=2000 bytes=16 pattern=scatter fill=random",
        Machine = "pc-i440fx-7.2",
        Accelerator = Accelerator.Tcg,
    };

    /// <summary>A source whose guest has filled its working set and dirties memory.</summary>
    public static async Task<VmRecord> StartSourceAsync(QemuLauncher launcher, string name, CancellationToken ct, IReadOnlyList<string>? extra = null)
    {
        Assert.True(File.Exists(Guest), $"The test guest {Guest} is missing: run `dotnet pwsh ./build.ps1 deps`.");
        var record = await launcher.StartAsync(Spec(name) with { ExtraArguments = extra ?? [] }, ct);
        var clock = Stopwatch.StartNew();
        while (!File.Exists(record.SerialLog) || !(await File.ReadAllTextAsync(record.SerialLog, ct)).Contains("DMGUEST ready", StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"The guest of '{name}' did not get ready.");
            await Task.Delay(50, ct);
        }

        return record;
    }

    /// <summary>QEMU's run state through the query monitor, or "exited".</summary>
    public static async Task<string> StateAsync(VmRecord vm, CancellationToken ct)
    {
        if (!QemuLauncher.IsAlive(vm.Pid))
        {
            return "exited";
        }

        await using var qmp = await QmpClient.ConnectUnixAsync(vm.QuerySocket, logger: null, TimeSpan.FromSeconds(5), ct);
        return (await qmp.QueryStatusAsync(ct)).Status;
    }

    /// <summary>How one side of a migration ended: completed, in doubt, cancelled or failed.</summary>
    public static async Task<string> EndOf(Task task)
    {
        try
        {
            await task;
            return "completed";
        }
        catch (MigrationInDoubtException)
        {
            return "in doubt";
        }
        catch (OperationCanceledException)
        {
            return "cancelled";
        }
        catch (EngineException)
        {
            return "failed";
        }
    }

    /// <summary>Kills every QEMU the folder knows and deletes it.</summary>
    public static async Task RemoveAllAsync(string directory)
    {
        foreach (var record in new RunDirectory(directory).LoadAll())
        {
            try
            {
                using var process = Process.GetProcessById(record.Pid);
                process.Kill();
                await process.WaitForExitAsync();
            }
            catch (Exception)
            {
                // already gone
            }
        }

        Directory.Delete(directory, recursive: true);
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "DeltaMigrate.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root from " + AppContext.BaseDirectory);
    }
}

using System.Diagnostics;
using System.Net.Sockets;
using DeltaMigrate.Engine.Qmp;

namespace DeltaMigrate.Engine.Tests.Streams;

/// <summary>Real migration streams captured from QEMU 7.2 and 10.0 (once per test run, shared by the tests).</summary>
internal static class StreamCapture
{
    public const string Qemu72 = "/usr/bin/qemu-system-x86_64";
    public const string Qemu10Prefix = "/work/main/.tools/qemu10";
    public const string GuestElf = "/work/main/tests/guest/out/guest.elf";

    private static readonly Lazy<Task<byte[]>> Plain72 = new(() => CaptureAsync(Qemu72, xbzrle: false));
    private static readonly Lazy<Task<byte[]>> Plain10 = new(() => CaptureAsync(Qemu10Binary, xbzrle: false));
    private static readonly Lazy<Task<byte[]>> Xbzrle72 = new(() => CaptureAsync(Qemu72, xbzrle: true));
    private static readonly Lazy<Task<byte[]>> Native10 = new(() => CaptureAsync(Qemu10Binary, xbzrle: false, machine: "pc-i440fx-10.0"));

    public static string Qemu10Binary => Path.Combine(Qemu10Prefix, "usr/bin/qemu-system-x86_64");

    public static Task<byte[]> Plain72Async() => Plain72.Value;

    public static Task<byte[]> Plain10Async() => Plain10.Value;

    public static Task<byte[]> Xbzrle72Async() => Xbzrle72.Value;

    /// <summary>QEMU 10.0 with its own machine type: sends SWITCHOVER_START.</summary>
    public static Task<byte[]> Native10Async() => Native10.Value;

    public static List<string> BaseArgs(string qemu, string machine = "pc-i440fx-7.2")
    {
        var args = new List<string> { "-machine", machine, "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none" };
        if (qemu.StartsWith(Qemu10Prefix, StringComparison.Ordinal))
        {
            args.AddRange(["-L", Path.Combine(Qemu10Prefix, "usr/share/qemu"), "-L", Path.Combine(Qemu10Prefix, "usr/share/seabios")]);
        }

        return args;
    }

    public static Process Launch(string qemu, IEnumerable<string> args, System.Text.StringBuilder? stderr = null)
    {
        Assert.True(File.Exists(qemu), $"{qemu} is missing");
        var psi = new ProcessStartInfo(qemu) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, e) =>
        {
            if (stderr is not null && e.Data is not null)
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            }
        };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return p;
    }

    public static async Task<QmpClient> ConnectAsync(string socket, Process p)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            try
            {
                if (File.Exists(socket))
                {
                    return await QmpClient.ConnectUnixAsync(socket);
                }
            }
            catch (QmpException ex) when (ex.InnerException is SocketException && DateTime.UtcNow < deadline)
            {
            }

            Assert.False(p.HasExited, "QEMU exited early");
            Assert.True(DateTime.UtcNow < deadline, "QMP socket did not come up");
            await Task.Delay(20);
        }
    }

    public static void Kill(Process p)
    {
        try
        {
            if (!p.HasExited)
            {
                p.Kill();
            }

            p.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }

        p.Dispose();
    }

    /// <summary>Runs the test guest, migrates it to <c>exec:cat &gt; file</c> over several rounds, returns the stream.</summary>
    private static async Task<byte[]> CaptureAsync(string qemu, bool xbzrle, string machine = "pc-i440fx-7.2")
    {
        string dir = Directory.CreateTempSubdirectory("dm-stream-").FullName;
        string socket = Path.Combine(dir, "qmp.sock");
        string serial = Path.Combine(dir, "serial.txt");
        string file = Path.Combine(dir, "stream.bin");
        var args = BaseArgs(qemu, machine);
        args.AddRange(["-kernel", GuestElf, "-append", "ws=16 hot=4 rate=2000", "-serial", $"file:{serial}", "-qmp", $"unix:{socket},server=on,wait=off"]);
        var p = Launch(qemu, args);
        try
        {
            await using var qmp = await ConnectAsync(socket, p);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (!(File.Exists(serial) && File.ReadAllText(serial).Contains("DMGUEST ready", StringComparison.Ordinal)))
            {
                Assert.True(DateTime.UtcNow < deadline, "guest did not print DMGUEST ready");
                await Task.Delay(20);
            }

            if (xbzrle)
            {
                await qmp.MigrateSetCapabilitiesAsync(new Dictionary<string, bool> { ["xbzrle"] = true });
            }

            // Slow and strict at first so there are several rounds, then let it finish.
            await qmp.MigrateSetParametersAsync(new Dictionary<string, object> { ["max-bandwidth"] = 48L << 20, ["downtime-limit"] = 1 });
            await qmp.MigrateAsync($"exec:cat > {file}");
            var start = DateTime.UtcNow;
            bool relaxed = false;
            while (true)
            {
                var info = await qmp.QueryMigrateAsync();
                if (info.Status == "completed")
                {
                    break;
                }

                Assert.False(info.IsFinished, $"migration {info.Status}: {info.ErrorDescription}");
                if (!relaxed && (DateTime.UtcNow - start > TimeSpan.FromSeconds(8) || (info.Ram?.DirtySyncCount >= 8 && (!xbzrle || info.XbzrleCache?.Pages >= 200))))
                {
                    await qmp.MigrateSetParametersAsync(new Dictionary<string, object> { ["max-bandwidth"] = 1L << 30, ["downtime-limit"] = 2000 });
                    relaxed = true;
                }

                Assert.True(DateTime.UtcNow - start < TimeSpan.FromSeconds(20), "migration did not complete");
                await Task.Delay(50);
            }

            return await File.ReadAllBytesAsync(file);
        }
        finally
        {
            Kill(p);
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using DeltaMigrate.Engine.Qmp;

namespace DeltaMigrate.Engine.Tests.Qmp;

/// <summary>
/// A throw-away QEMU (TCG, 64 MiB, no devices, stopped with -S) with a QMP monitor, in its own temp directory.
/// Dispose kills it and deletes the directory.
/// </summary>
internal sealed partial class QemuProcess : IAsyncDisposable
{
    public const string QemuPath = "/usr/bin/qemu-system-x86_64";

    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly StringBuilder _stderr = new();

    private QemuProcess(Process process, string directory, string? socketPath, int tcpPort)
    {
        Process = process;
        Directory = directory;
        SocketPath = socketPath;
        TcpPort = tcpPort;
    }

    public Process Process { get; }

    public string Directory { get; }

    public string? SocketPath { get; }

    public int TcpPort { get; }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Fails (not skips) when QEMU is missing: the real-QEMU tests are part of the contract.</summary>
    public static void RequireQemu()
    {
        if (!File.Exists(QemuPath))
        {
            Assert.Fail($"{QemuPath} is not installed, so the real-QEMU QMP tests cannot run. Run `dotnet pwsh ./build.ps1` to set up the machine (it installs QEMU), then rerun the tests.");
        }
    }

    public static async Task<QemuProcess> StartUnixAsync(params string[] extraArgs)
    {
        RequireQemu();
        string dir = System.IO.Directory.CreateTempSubdirectory("dm-qemu-").FullName;
        string socketPath = Path.Combine(dir, "qmp.sock");
        var qemu = Launch(dir, socketPath, 0, ["-qmp", $"unix:{socketPath},server=on,wait=off", .. extraArgs]);
        try
        {
            await qemu.WaitUntilAsync(() => File.Exists(socketPath), "its QMP socket to appear");
        }
        catch
        {
            await qemu.DisposeAsync();
            throw;
        }

        return qemu;
    }

    public static Task<QemuProcess> StartTcpAsync(params string[] extraArgs)
    {
        RequireQemu();
        string dir = System.IO.Directory.CreateTempSubdirectory("dm-qemu-").FullName;
        int port = FreeTcpPort();
        return Task.FromResult(Launch(dir, null, port, ["-qmp", $"tcp:127.0.0.1:{port},server=on,wait=off", .. extraArgs]));
    }

    /// <summary>
    /// Connects to the monitor, retrying "connection refused" until QEMU listens: QEMU creates the unix socket
    /// file at bind() and only listens a moment later, so the file existing is not enough.
    /// </summary>
    public async Task<QmpClient> ConnectAsync(TimeSpan? connectTimeout = null)
    {
        TimeSpan timeout = connectTimeout ?? StartTimeout;
        var deadline = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            try
            {
                return SocketPath is not null
                    ? await QmpClient.ConnectUnixAsync(SocketPath, connectTimeout: timeout)
                    : await QmpClient.ConnectTcpAsync("127.0.0.1", TcpPort, connectTimeout: timeout);
            }
            catch (QmpException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } && DateTime.UtcNow < deadline && !Process.HasExited)
            {
                await Task.Delay(10);
            }
        }
    }

    /// <summary>Freezes QEMU with SIGSTOP and returns once the kernel reports it stopped.</summary>
    public async Task FreezeAsync()
    {
        Assert.Equal(0, Kill(Process.Id, 19 /* SIGSTOP */));
        await WaitUntilAsync(() => ReadState() is 'T' or 't', "the stopped state after SIGSTOP");
    }

    /// <summary>QEMU's --version text.</summary>
    public static async Task<string> VersionTextAsync()
    {
        RequireQemu();
        using var p = Process.Start(new ProcessStartInfo(QemuPath, "--version") { RedirectStandardOutput = true, UseShellExecute = false })!;
        string text = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(StartTimeout);
        return text;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
            }

            await Process.WaitForExitAsync().WaitAsync(StartTimeout);
        }
        catch (InvalidOperationException)
        {
        }
        finally
        {
            Process.Dispose();
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static QemuProcess Launch(string dir, string? socketPath, int port, string[] qmpAndExtraArgs)
    {
        var psi = new ProcessStartInfo(QemuPath)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
        };
        foreach (string arg in (string[])["-machine", "pc", "-accel", "tcg", "-m", "64", "-display", "none", "-nodefaults", "-S", .. qmpAndExtraArgs])
        {
            psi.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = psi };
        var qemu = new QemuProcess(process, dir, socketPath, port);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (qemu._stderr)
                {
                    qemu._stderr.AppendLine(e.Data);
                }
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return qemu;
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (!condition())
        {
            if (Process.HasExited)
            {
                Assert.Fail($"QEMU exited with {Process.ExitCode} while waiting for {what}: {Stderr}");
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"QEMU did not reach {what} within {StartTimeout.TotalSeconds} s: {Stderr}");
            }

            await Task.Delay(10);
        }
    }

    private char ReadState()
    {
        // /proc/PID/stat: "pid (comm) S ..." - the state follows the last ')'.
        string stat = File.ReadAllText($"/proc/{Process.Id}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    private static int FreeTcpPort()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)listener.LocalEndPoint!).Port;
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

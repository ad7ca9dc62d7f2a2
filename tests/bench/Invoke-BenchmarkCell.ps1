<#
.SYNOPSIS
    One benchmark cell: boots a source and a destination VM, waits for the guest to dirty memory
    at a steady rate, migrates once, and writes the result as JSON.

.DESCRIPTION
    Invoke-MigrationBenchmark.ps1 runs this script inside a network namespace whose loopback is
    shaped with tc, so that both QEMUs, QEMU's own TCP (None, Native) and DeltaMigrate's tunnel
    TCP (Delta, Lz4) all cross the shaped link. It can also be run by hand (unshaped).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Guest,
    [Parameter(Mandatory)] [string] $Append,
    [Parameter(Mandatory)] [ValidateSet('None', 'Native', 'Delta', 'Lz4')] [string] $Compress,
    [Parameter(Mandatory)] [string] $OutFile,
    [long] $CacheSize = 0,
    [double] $Timeout = 120,
    [ValidateSet('Cancel', 'Pause')] [string] $TimeoutAction = 'Cancel',
    [double] $MaxDowntime = 0.3,
    [long] $Memory = 512MB,
    [int] $WarmupHeartbeats = 20,
    [string] $Machine = 'pc-i440fx-7.2',
    # The source VM's name (it titles the charts); the destination is "<name>-dst".
    [ValidatePattern('^[A-Za-z0-9][A-Za-z0-9_.-]*$')] [string] $VmName = 's',
    # Optional: the rounds chart of this migration (DeltaMigrate.Reports.MigrationReport), rendered here
    # from the live MigrationResult, as a PNG of ChartWidth x ChartHeight.
    [string] $RoundsPng,
    [int] $ChartWidth = 900,
    [int] $ChartHeight = 450,
    # Optional: the MigrationResult serialized with System.Text.Json, so that a later step can
    # deserialize real MigrationResult objects (e.g. for RenderComparisonPng over several cells).
    [string] $ResultJson,
    # Optional: run Measure-KvmVM first (after the warm-up) and keep its per-mode predictions for a
    # link of this many bytes/s, with this cell's downtime limit, timeout and half the RAM as cache.
    [long] $MeasureBandwidth = 0
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module $ModulePath -Force

$runDir = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
$null = [IO.Directory]::CreateDirectory($runDir, [IO.UnixFileMode]'UserRead, UserWrite, UserExecute')   # the module refuses anything looser
$env:DELTAMIGRATE_RUNDIR = $runDir

function Wait-Until([scriptblock] $Condition, [string] $What, [int] $TimeoutSeconds = 180) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for $What" }
        Start-Sleep -Milliseconds 200
    }
}

function Get-Heartbeats([string] $SerialLog) {
    # Every heartbeat line as (hb, dirtied, rate).
    if (-not (Test-Path $SerialLog)) { return @() }
    foreach ($m in (Select-String -Path $SerialLog -Pattern '^DMGUEST hb (\d+) dirtied=(\d+) rate=(\d+)')) {
        $g = $m.Matches[0].Groups
        [pscustomobject]@{ Hb = [long]$g[1].Value; Dirtied = [long]$g[2].Value; Rate = [long]$g[3].Value }
    }
}

function Get-ProcCpuSeconds([Nullable[int]] $ProcessId) {
    # utime + stime of a process from /proc/<pid>/stat (fields 14 and 15, after the parenthesized comm).
    if (-not $ProcessId) { return $null }
    $path = "/proc/$ProcessId/stat"
    if (-not (Test-Path $path)) { return $null }
    $text = Get-Content -Raw $path
    $fields = $text.Substring($text.LastIndexOf(')') + 2).Split(' ')
    # After the comm: field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    ([long]$fields[11] + [long]$fields[12]) / $script:ClockTicks
}
$script:ClockTicks = [double]((& getconf CLK_TCK 2>$null) | Select-Object -First 1)
if (-not $script:ClockTicks) { $script:ClockTicks = 100 }

function Measure-LinkRtt {
    # The round trip of the link the migration uses: a TCP connect returns after SYN and SYN-ACK.
    $listen, $connect = if ($env:DELTAMIGRATE_LOCAL_LINK) { $env:DELTAMIGRATE_LOCAL_LINK -split ',' } else { '127.0.0.1', '127.0.0.1' }
    $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Parse($listen), 0)
    $listener.Start()
    try {
        $samples = foreach ($i in 1..3) {
            $client = [Net.Sockets.TcpClient]::new()
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $client.Connect([Net.IPAddress]::Parse($connect), $listener.LocalEndpoint.Port)
            $watch.Elapsed.TotalMilliseconds
            $client.Dispose()
        }
        [math]::Round(($samples | Measure-Object -Minimum).Minimum, 2)
    }
    finally { $listener.Stop() }
}

function Get-RateBetween($From, $To) {
    # Pages/s between two heartbeats (heartbeats are 100 ms of guest time apart).
    if (-not $From -or -not $To -or $To.Hb -le $From.Hb) { return $null }
    [math]::Round(($To.Dirtied - $From.Dirtied) / (($To.Hb - $From.Hb) * 0.1))
}

$cell = [ordered]@{
    Append = $Append; Compress = $Compress; CacheSize = $CacheSize; Timeout = $Timeout
    TimeoutAction = $TimeoutAction; MaxDowntime = $MaxDowntime; StartedUtc = [DateTime]::UtcNow.ToString('o')
}
try {
    $src = Start-KvmVM -Name $VmName -Memory $Memory -Kernel $Guest -Append $Append -Accelerator Tcg -Machine $Machine
    $dst = Start-KvmVM -Name "$VmName-dst" -Memory $Memory -Kernel $Guest -Append 'ws=1' -Accelerator Tcg -Machine $Machine -Incoming
    $fillWatch = [Diagnostics.Stopwatch]::StartNew()
    Wait-Until { Select-String -Path $src.SerialLog -Pattern '^DMGUEST ready' -Quiet } 'the guest to fill its working set'
    $cell.FillSeconds = [math]::Round($fillWatch.Elapsed.TotalSeconds, 1)
    $ready = (Select-String -Path $src.SerialLog -Pattern '^DMGUEST ready.*' | Select-Object -First 1).Line.Trim()
    $cell.GuestReady = $ready
    # A few heartbeats so the dirty rate is steady; the warm-up rate is measured over them.
    Wait-Until { @(Get-Heartbeats $src.SerialLog).Count -ge $WarmupHeartbeats } "$WarmupHeartbeats heartbeats"
    $cell.LinkRttMs = Measure-LinkRtt
    if ($MeasureBandwidth -gt 0) {
        $measureWatch = [Diagnostics.Stopwatch]::StartNew()
        $predictions = @(Measure-KvmVM -Name $VmName -Duration 3 -Bandwidth $MeasureBandwidth -MaxDowntime $MaxDowntime -CacheSize ([long]($Memory / 2)) -Timeout $Timeout)
        $cell.MeasureSeconds = [math]::Round($measureWatch.Elapsed.TotalSeconds, 1)
        # The sample itself, so the page can predict again for the rate the link really carried.
        $cell.ProfileJson = [Text.Json.JsonSerializer]::Serialize($predictions[0].Profile, [DeltaMigrate.Engine.Planning.MemoryProfile])
        $cell.Predictions = @($predictions | ForEach-Object {
                [ordered]@{
                    Mode = "$($_.Mode)"; Converges = $_.Converges; TotalSeconds = [math]::Round($_.TotalTime.TotalSeconds, 1)
                    DowntimeMs = [math]::Round($_.Downtime.TotalMilliseconds); WireMiB = [math]::Round($_.WireBytes / 1MB, 1); Rounds = $_.Rounds
                    Bandwidth = $_.Bandwidth; CacheSize = $_.CacheSize; DirtyPagesPerSecond = [math]::Round($_.DirtyPagesPerSecond)
                    HotSetMiB = [math]::Round($_.HotSetBytes / 1MB, 1); MeanDeltaBytes = [math]::Round($_.MeanDeltaBytes); Lz4Ratio = [math]::Round($_.Lz4Ratio, 2)
                }
            })
        # The snapshots stall the guest for a moment: let its rate settle again before migrating.
        $settled = @(Get-Heartbeats $src.SerialLog).Count + 10
        Wait-Until { @(Get-Heartbeats $src.SerialLog).Count -ge $settled } 'the guest to settle after Measure-KvmVM'
    }
    $before = @(Get-Heartbeats $src.SerialLog)
    $first = $before[[math]::Max(0, $before.Count - 10)]   # the last ~second before migrating
    $last = $before[-1]
    $cell.GuestRateBefore = Get-RateBetween $first $last
    $cell.GuestRateBeforeLine = ($before[-1] | ForEach-Object { "hb $($_.Hb) dirtied=$($_.Dirtied) rate=$($_.Rate)" })

    $move = @{
        Name = $VmName; Destination = "$VmName-dst"; Compress = $Compress; MaxDowntime = $MaxDowntime
        KeepSource = $true   # its QEMU's CPU time is read after the move (without it, the source quits at the commit)
        Timeout = $Timeout; TimeoutAction = $TimeoutAction; PassThru = $true
    }
    if ($CacheSize -gt 0) { $move.CacheSize = $CacheSize }
    $errs = $null
    # CPU seconds per side over the migration: each QEMU from /proc, the engine (this pwsh process,
    # which runs Move-KvmVM and, for Delta and Lz4, the tunnel's encoder and decoder) from .NET.
    $self = [Diagnostics.Process]::GetCurrentProcess()
    $cpu0 = @{ Src = Get-ProcCpuSeconds $src.Pid; Dst = Get-ProcCpuSeconds $dst.Pid; Engine = $self.TotalProcessorTime.TotalSeconds }
    $moveWatch = [Diagnostics.Stopwatch]::StartNew()
    $result = Move-KvmVM @move -ErrorAction SilentlyContinue -ErrorVariable errs -Confirm:$false
    $self.Refresh()
    $cpu1 = @{ Src = Get-ProcCpuSeconds $src.Pid; Dst = Get-ProcCpuSeconds $dst.Pid; Engine = $self.TotalProcessorTime.TotalSeconds }
    foreach ($k in 'Src', 'Dst', 'Engine') {
        # A QEMU that exited during the migration (the source after completion, with teardown) has no /proc entry: null.
        $cell["Cpu${k}Seconds"] = if ($null -ne $cpu0[$k] -and $null -ne $cpu1[$k]) { [math]::Round($cpu1[$k] - $cpu0[$k], 2) } else { $null }
    }
    $cell.QemuPids = "$($src.Pid)/$($dst.Pid)"
    if (-not $result -and $errs) {
        $e = $errs | Select-Object -First 1
        $cell.ErrorId = $e.FullyQualifiedErrorId
        $cell.ErrorMessage = $e.Exception.Message
        if ($e.TargetObject -and $e.TargetObject.PSObject.Properties['Status']) { $result = $e.TargetObject }
    }
    elseif ($errs) {
        $cell.ErrorId = ($errs | Select-Object -First 1).FullyQualifiedErrorId
        $cell.ErrorMessage = ($errs | Select-Object -First 1).Exception.Message
    }

    # Our own clock around Move-KvmVM (preflight and teardown included), as a cross-check of TotalTime.
    $cell.MoveSeconds = [math]::Round($moveWatch.Elapsed.TotalSeconds, 2)

    # The guest's achieved rate during the migration: from the last pre-migration heartbeat to the
    # last heartbeat the source printed (the source stops at the final copy or after cancel).
    Start-Sleep -Milliseconds 300
    $after = @(Get-Heartbeats $src.SerialLog)
    $cell.GuestRateDuring = Get-RateBetween $last $after[-1]
    $cell.GuestRateMinDuring = ($after | Where-Object Hb -GT $last.Hb | Measure-Object Rate -Minimum).Minimum

    if ($result) {
        $r = $result
        $c = $r.Compression
        $cell.Status = "$($r.Status)"
        $cell.Converged = $r.Converged
        $cell.TimedOut = $r.TimedOut
        $cell.TotalSeconds = [math]::Round(([TimeSpan]$r.TotalTime).TotalSeconds, 2)
        $cell.DowntimeMs = if ($null -ne $r.Downtime) { [math]::Round(([TimeSpan]$r.Downtime).TotalMilliseconds, 1) } else { $null }
        $cell.WireMiB = [math]::Round($r.BytesTransferred / 1MB, 1)
        $cell.StreamMiB = [math]::Round($r.StreamBytes / 1MB, 1)
        $cell.DirtySyncCount = $r.DirtySyncCount
        $cell.RoundsRecorded = @($r.Rounds).Count
        $cell.DestinationState = "$($r.DestinationState)"
        $cell.SourceState = "$($r.SourceState)"
        if ($c) {
            $cell.Compression = [ordered]@{
                CacheSize = $c.CacheSize; XbzrlePages = $c.XbzrlePages; UnchangedPages = $c.UnchangedPages
                RawPages = $c.RawPages; CacheHits = $c.CacheHits; CacheMisses = $c.CacheMisses
                Overflows = $c.Overflows; EncodedBytes = $c.EncodedBytes; WireBytes = $c.WireBytes
                StreamBytes = $c.StreamBytes; CompressionRatio = $c.CompressionRatio
                EncodeTime = "$($c.EncodeTime)"; CompressTime = "$($c.CompressTime)"
            }
        }
        $cell.Rounds = @($r.Rounds | ForEach-Object {
                [ordered]@{
                    Round = $_.Round; Elapsed = [math]::Round(([TimeSpan]$_.Elapsed).TotalSeconds, 2)
                    Duration = [math]::Round(([TimeSpan]$_.Duration).TotalSeconds, 3); Exact = $_.Exact
                    StreamMiB = [math]::Round($_.StreamBytes / 1MB, 2); SentMiB = [math]::Round($_.SentBytes / 1MB, 2)
                    RemainingMiB = [math]::Round($_.BytesRemaining / 1MB, 1)
                    WireMiB = [math]::Round($_.WireBytes / 1MB, 2); DirtyPagesRate = $_.DirtyPagesRate
                    RawPages = $_.RawPages; XbzrlePages = $_.XbzrlePages; ZeroPages = $_.ZeroPages; UnchangedPages = $_.UnchangedPages
                }
            })
        if ($ResultJson -or $RoundsPng) {
            try {
                $typed = $r -as [DeltaMigrate.Engine.Migration.MigrationResult]
                if (-not $typed) { throw "the result is a $($r.GetType().FullName), not a MigrationResult" }
                if ($ResultJson) {
                    [IO.File]::WriteAllText($ResultJson, [Text.Json.JsonSerializer]::Serialize($typed, [DeltaMigrate.Engine.Migration.MigrationResult]))
                }
                if ($RoundsPng) {
                    $reports = Join-Path ([IO.Path]::GetDirectoryName([DeltaMigrate.Engine.Migration.MigrationResult].Assembly.Location)) 'DeltaMigrate.Reports.dll'
                    if (-not ('DeltaMigrate.Reports.MigrationReport' -as [type])) { Add-Type -Path $reports }
                    [IO.File]::WriteAllBytes($RoundsPng, [DeltaMigrate.Reports.MigrationReport]::RenderRoundsPng($typed, $ChartWidth, $ChartHeight))
                    $cell.RoundsPng = [IO.Path]::GetFileName($RoundsPng)
                }
            }
            catch { $cell.ChartError = "$($_.Exception.Message)" }
        }
        # The full object too, for whoever wants to look closer (not committed).
        $r | ConvertTo-Json -Depth 4 | Set-Content -Path ([IO.Path]::ChangeExtension($OutFile, '.full.json'))
    }
}
catch {
    $cell.HarnessError = "$($_.Exception.Message) at $($_.InvocationInfo.PositionMessage)"
}
finally {
    $cell.FinishedUtc = [DateTime]::UtcNow.ToString('o')
    $cell | ConvertTo-Json -Depth 5 | Set-Content -Path $OutFile
    Get-KvmVM -ErrorAction Ignore | Stop-KvmVM -Force -Confirm:$false -ErrorAction Ignore
    Remove-Item -Recurse -Force $runDir -ErrorAction Ignore
}

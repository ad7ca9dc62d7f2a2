# Many VMs at once (Move-KvmVM -ThrottleLimit), the memory budget of their page caches, and -AsJob,
# against real QEMU; the remote case over real sshd in a network namespace (TestHosts.ps1).
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    $script:RunDir = Initialize-TestRunDirectory
    # Light guests: 16 MiB of random data each, a small hot set, so five fit on two shared cores.
    $script:Light = 'ws=16 hot=2 rate=500 bytes=16 pattern=scatter fill=random'

    function Get-MaxOverlap($Results) {
        # The most migrations running at one instant, from their [StartTime, EndTime] intervals.
        $edges = foreach ($r in $Results) { [pscustomobject]@{ T = $r.StartTime.UtcTicks; D = 1 }; [pscustomobject]@{ T = $r.EndTime.UtcTicks; D = -1 } }
        $now = 0; $max = 0
        foreach ($e in $edges | Sort-Object T, D) { $now += $e.D; if ($now -gt $max) { $max = $now } }
        $max
    }
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Move-KvmVM -ThrottleLimit to another host' {
    BeforeAll {
        $script:H = New-TestHost -Name par
        $script:S = New-TestHostSession -TestHost $H
        Invoke-Command -Session $S { Import-Module $using:ModuleUnderTest }
    }

    AfterAll {
        if ($H) { Remove-TestHost $H }
    }

    It 'moves five piped VMs, at most three at once, each to its own waiting VM and receiver there' {
        $names = 1..5 | ForEach-Object { "par$_" }
        foreach ($n in $names) { $null = Start-TestSource -Name $n -Append $Light }
        $ssh = @{ UserKnownHostsFile = $H.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }

        # In its own [powershell], so its progress records can be read afterwards from Streams.Progress.
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                    param($Manifest, $Address, $Key, $Ssh)
                    Import-Module $Manifest
                    Get-KvmVM 'par?' | Move-KvmVM -DestinationHost $Address -UserName root -KeyFilePath $Key -SshOption $Ssh -ThrottleLimit 3 -Bandwidth 12MB -PassThru
                }).AddArgument($ModuleUnderTest).AddArgument($H.Address).AddArgument($H.KeyFilePath).AddArgument($ssh)
            $results = @($ps.Invoke())
            $errors = @($ps.Streams.Error)
            $progress = @($ps.Streams.Progress)
        }
        finally { $ps.Dispose() }

        $errors | Should -BeNullOrEmpty
        $results.Count | Should -Be 5
        $results.Status | Should -Be (@('Completed') * 5)
        ($results.VMName | Sort-Object) | Should -Be $names
        ($results.MigrationId | Sort-Object -Unique).Count | Should -Be 5

        # All arrived: running there, gone here.
        foreach ($n in $names) { { Get-KvmVM $n -ErrorAction Stop } | Should -Throw -ErrorId 'VMNotFound*' }
        $remote = Invoke-Command -Session $S { Get-KvmVM 'par?' } | Sort-Object Name
        $remote.Name | Should -Be $names
        $remote.State | Should -Be (@('running') * 5)

        # Concurrency: never more than the limit, and really more than one.
        $overlap = Get-MaxOverlap $results
        $overlap | Should -BeLessOrEqual 3
        $overlap | Should -BeGreaterThan 1

        # One -Bandwidth for all: the wire bytes of all five over the whole span stay within 12 MB/s (plus one burst).
        $span = (($results.EndTime | Measure-Object -Maximum).Maximum - ($results.StartTime | Measure-Object -Minimum).Minimum).TotalSeconds
        ($results.BytesTransferred | Measure-Object -Sum).Sum | Should -BeLessOrEqual (12MB * $span + 2MB)
        ($results.BytesTransferred | Measure-Object -Sum).Sum | Should -BeGreaterThan (5 * 16MB) -Because 'each guest filled 16 MiB with random data'

        # One parent record for the batch; one child per VM, each its own id, all under the parent.
        $parent = @($progress | Where-Object Activity -EQ 'Moving 5 VMs')
        $parent | Should -Not -BeNullOrEmpty
        $parentId = $parent[0].ActivityId
        @($parent.ActivityId | Sort-Object -Unique) | Should -Be @($parentId)
        $parent[0].ParentActivityId | Should -Be -1
        $parent[-1].StatusDescription | Should -Be '5 done, 0 running'
        $children = @($progress | Where-Object Activity -Like 'Migrating par* to *')
        ($children.ActivityId | Sort-Object -Unique).Count | Should -Be 5
        $parentId | Should -Not -BeIn $children.ActivityId
        @($children.ParentActivityId | Sort-Object -Unique) | Should -Be @($parentId)
        ($children | Group-Object Activity).Count | Should -Be 5

        # One session served all five receives: the test's own and the command's are the only logins.
        @(Select-String -Path $H.SshdLog -Pattern 'Accepted publickey').Count | Should -Be 2

        # No token in anything it wrote (a token is 43 base64url characters).
        ($results, $progress | Out-String) | Should -Not -Match '(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])'
        Invoke-Command -Session $S { Get-KvmVM 'par?' | Stop-KvmVM -Force }
    }
}

Describe 'Move-KvmVM -ThrottleLimit on one host' {
    It 'refuses one -Destination for several VMs (DestinationSingleUse) and moves none' {
        $null = Start-TestSource -Name one-a -Append $Light
        $null = Start-TestSource -Name one-b -Append $Light
        $null = Start-TestDestination -Name one-dst
        { Get-KvmVM 'one-?' | Move-KvmVM -Destination one-dst -ThrottleLimit 2 -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationSingleUse,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        (Get-KvmVM 'one-?').State | Should -Be 'running', 'running'
        (Get-KvmVM one-dst).State | Should -Be 'inmigrate'
        (Invoke-KvmQmp one-a query-migrate).PSObject.Properties['status'] | Should -BeNullOrEmpty
        Get-KvmVM 'one-*' | Stop-KvmVM -Force
    }

    It 'goes on with the others when one VM fails, each failure its own error' {
        foreach ($n in 'ok-a', 'ok-b', 'bad-c') { $null = Start-TestSource -Name $n -Append $Light }
        $null = Start-TestDestination -Name ok-a-new
        $null = Start-TestDestination -Name ok-b-new
        $other = Start-TestSource -Name bad-c-new -Append $Light   # running, so not waiting: bad-c must fail
        $items = 'ok-a', 'bad-c', 'ok-b' | ForEach-Object { [pscustomobject]@{ Name = $_; Destination = "$_-new" } }
        $results = @($items | Move-KvmVM -ThrottleLimit 3 -PassThru -ErrorAction SilentlyContinue -ErrorVariable failed)

        ($results.VMName | Sort-Object) | Should -Be 'ok-a', 'ok-b'
        $results.Status | Should -Be 'Completed', 'Completed'
        $failed.Count | Should -Be 1
        $failed[0].FullyQualifiedErrorId | Should -Be 'DestinationNotWaiting,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        (Get-KvmVM bad-c).State | Should -Be 'running'
        (Get-KvmVM 'ok-?-new').State | Should -Be 'running', 'running'
        Get-KvmVM 'ok-*', 'bad-*' | Stop-KvmVM -Force
    }
}

Describe 'Move-KvmVM -MemoryBudget' {
    It 'refuses a page cache that cannot fit (CacheBudgetExceeded), naming VM and sizes; the source is untouched' {
        $null = Start-TestSource -Name bud-src -Append $Light
        $null = Start-TestDestination -Name bud-dst
        $err = $null
        Move-KvmVM bud-src -Destination bud-dst -MemoryBudget 32MB -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -Be 'CacheBudgetExceeded,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        "$($err[0])" | Should -Match "VM 'bud-src' needs a page cache of $(64MB) bytes but the memory budget for page caches is $(32MB) bytes"
        "$($err[0])" | Should -Match '-MemoryBudget'

        # An explicit -CacheSize larger than the budget is refused too, and says which knob to turn.
        $err = $null
        Move-KvmVM bud-src -Destination bud-dst -CacheSize 128MB -MemoryBudget 100MB -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -Be 'CacheBudgetExceeded,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        "$($err[0])" | Should -Match '-CacheSize'

        (Get-KvmVM bud-src).State | Should -Be 'running'
        (Get-KvmVM bud-dst).State | Should -Be 'inmigrate' -Because 'nothing was sent: the budget is checked before the destination is asked'
        (Invoke-KvmQmp bud-src query-migrate).PSObject.Properties['status'] | Should -BeNullOrEmpty

        # The same VM fits a budget that holds its cache, and moves.
        (Move-KvmVM bud-src -Destination bud-dst -MemoryBudget 64MB -PassThru).Compression.CacheSize | Should -Be 64MB
    }

    It 'shrinks a second cache to what is free, with a warning that names the VM and the sizes' {
        # 256 MiB VMs want 128 MiB caches; a 200 MiB budget holds one and 72 MiB of the other.
        $vms = foreach ($n in 'shr-a', 'shr-b') {
            $vm = Start-KvmVM -Name $n -Memory 256MB -Kernel $Guest -Append $Light -Accelerator Tcg -Machine $Machine
            Wait-Until { Select-String -Path $vm.SerialLog -Pattern '^DMGUEST ready' -Quiet } "guest '$n' to fill its working set"
            $null = Start-KvmVM -Name "$n-new" -Memory 256MB -Kernel $Guest -Append 'ws=16' -Accelerator Tcg -Machine $Machine -Incoming
            $vm
        }
        # 4 MB/s shared: each migration takes seconds, so the two caches are held at once.
        $results = @(Get-KvmVM 'shr-?' | ForEach-Object { [pscustomobject]@{ Name = $_.Name; Destination = "$($_.Name)-new" } } |
                Move-KvmVM -ThrottleLimit 2 -MemoryBudget 200MB -Bandwidth 4MB -PassThru -WarningVariable warnings 3>$null)
        $results.Status | Should -Be 'Completed', 'Completed'
        ($results.Compression.CacheSize | Sort-Object) | Should -Be (72MB), (128MB)
        $shrunk = ($results | Where-Object { $_.Compression.CacheSize -eq 72MB }).VMName
        "$warnings" | Should -Match "${shrunk}: page cache shrunk from $(128MB) to $(72MB) bytes to fit the memory budget of $(200MB) bytes"
        Get-KvmVM 'shr-*' | Stop-KvmVM -Force
    }
}

Describe 'Move-KvmVM -AsJob' {
    It 'returns a job whose output is the result' {
        $null = Start-TestSource -Name aj-src -Append $Light
        $null = Start-TestDestination -Name aj-dst
        $job = Move-KvmVM aj-src -Destination aj-dst -AsJob -PassThru
        $job | Should -BeOfType [System.Management.Automation.Job]
        $result = $job | Wait-Job -Timeout 120 | Receive-Job
        $job.State | Should -Be 'Completed'
        $result.Status | Should -Be 'Completed'
        (Get-KvmVM aj-dst).State | Should -Be 'running'
        Remove-Job $job
        Stop-KvmVM aj-dst -Force
    }

    It 'Stop-Job during <_> migration(s) cancels them: every source keeps running' -ForEach 1, 2 {
        $n = $_
        $sources = foreach ($i in 1..$n) {
            Start-TestSource -Name "stop$n-$i" -Append $Light
            $null = Start-TestDestination -Name "stop$n-$i-new"
        }
        $items = $sources | ForEach-Object { [pscustomobject]@{ Name = $_.Name; Destination = "$($_.Name)-new" } }
        $job = $items | Move-KvmVM -ThrottleLimit $n -Bandwidth 1MB -AsJob
        try {
            # The job's own progress says each migration is under way (QEMU is sending).
            Wait-Until {
                @($job.Progress | Where-Object { $_.Activity -like "Migrating stop$n-* to *" -and $_.StatusDescription -match '^active' } |
                        Select-Object -ExpandProperty Activity -Unique).Count -eq $n
            } "the job to report $n migration(s) active"
            $job | Stop-Job
            $job.State | Should -Be 'Stopped'
        }
        finally { Remove-Job $job -Force }

        foreach ($src in $sources) {
            (Invoke-KvmQmp $src.Name query-migrate).status | Should -Be 'cancelled'
            (Get-KvmVM $src.Name).State | Should -Be 'running'
            $beat = Get-Heartbeat $src.SerialLog
            Wait-Until { (Get-Heartbeat $src.SerialLog) -gt $beat } "the source guest $($src.Name) to keep running"
        }
        Get-KvmVM "stop$n-*" | Stop-KvmVM -Force
    }
}
